"""Build the optional compiled kernels (Cython). When they cannot be compiled the install still
succeeds and pyglmm runs its pure numpy/scipy code paths (pyglmm.fit.compiled.AVAILABLE)."""
from setuptools import Extension, setup

try:
    import numpy
    from Cython.Build import cythonize
except ImportError:          # no Cython (or numpy) at build time: pure-Python install
    ext_modules = []
else:
    # _glmm takes array data pointers through numpy's C API (no typed memoryview per call)
    ext_modules = cythonize(
        [Extension(f"pyglmm.{name}", [f"src/pyglmm/{name.replace('.', '/')}.pyx"], optional=True,
                   include_dirs=[numpy.get_include()],
                   define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                   extra_compile_args=["-O3"])
         for name in ("fit._glmm", "fit._lmm", "fit._optim", "fit._frame")],
        compiler_directives={"language_level": 3}, include_path=["src"], quiet=True)

setup(ext_modules=ext_modules)
