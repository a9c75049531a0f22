"""Developer tools kept with the code: the sanitizer run (sanitize.sh) and the fuzz harness
(python -m tools.fuzz). Not part of the installed package."""
