"""Every public function, class, method and property of the package has a docstring (its
own or, for an override, the one of the method it overrides)."""
import importlib
import inspect

MODULES = ["transformer_c", "transformer_c.options", "transformer_c.functional",
           "transformer_c.nn", "transformer_c.optim", "transformer_c.tree",
           "transformer_c.schedules", "transformer_c.generate", "transformer_c.data",
           "transformer_c.train", "transformer_c.checkpoint", "transformer_c.viz",
           "transformer_c.testing", "transformer_c.distributed", "transformer_c.compat.mytorch",
           "transformer_c.compat.hw4lib", "transformer_c.studies"]


def _property_doc(cls, name):
    for k in cls.__mro__:
        p = k.__dict__.get(name)
        if isinstance(p, property) and p.__doc__:
            return p.__doc__
    return None


def undocumented():
    missing = set()
    for module_name in MODULES:
        m = importlib.import_module(module_name)
        names = getattr(m, "__all__", [n for n in dir(m) if not n.startswith("_")])
        for name in names:
            obj = getattr(m, name, None)
            own = getattr(obj, "__module__", "") or ""
            if not own.startswith("transformer_c"):
                continue
            if inspect.isfunction(obj) and not inspect.getdoc(obj):
                missing.add(f"{own}.{name}")
            if not inspect.isclass(obj):
                continue
            if not inspect.getdoc(obj):
                missing.add(f"{own}.{obj.__name__}")
            for attr in dir(obj):
                if attr.startswith("_"):
                    continue
                raw = inspect.getattr_static(obj, attr)
                if isinstance(raw, (staticmethod, classmethod)):
                    raw = raw.__func__
                if isinstance(raw, property):
                    ok = _property_doc(obj, attr)
                elif inspect.isfunction(raw):
                    ok = inspect.getdoc(getattr(obj, attr))
                else:
                    continue
                if not ok:
                    missing.add(f"{own}.{obj.__name__}.{attr}")
    return sorted(missing)


def test_every_public_api_has_a_docstring():
    assert undocumented() == []
