cdef class Objective:
    """An objective with value and gradient in one C call, for `bfgs_bounded` without Python
    in its loop (the compiled deviance kernels derive from it)."""
    cdef Py_ssize_t nx
    cdef int fg(self, const double* x, double* f, double* g) except -1
