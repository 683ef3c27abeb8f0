"""The public model classes of every registered architecture, importable from their historical home.

``from ernie_style.modeling import RoFormerForPretraining`` keeps working, and so does the same import of any
architecture registered later: the names are each ArchSpec's ``public`` list (the math lives with its
architecture, ``ernie_style/arch/<name>/``).  Nothing inside the package imports this module.
"""
from ernie_style.arch import all_archs
from ernie_style.arch.spec import resolve

__all__ = []
for _spec in all_archs():
    for _ref in _spec.public:
        _obj = resolve(_ref)
        globals()[_obj.__name__] = _obj
        __all__.append(_obj.__name__)
del _spec, _ref, _obj
