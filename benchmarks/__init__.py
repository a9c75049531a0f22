"""Side-by-side benchmarks of transformer_c against PyTorch and NumPy (DESIGN.md section 7)."""
