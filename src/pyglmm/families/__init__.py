"""Link functions and GLM(M) families (R ``family`` objects in spirit).

See :mod:`pyglmm.families.links` and :mod:`pyglmm.families.family` for the
exact R formulas and conventions reproduced.
"""

from .family import (
    ALLOWED_LINKS,
    FAMILIES,
    Binomial,
    Family,
    Gamma,
    Gaussian,
    InverseGaussian,
    NegativeBinomial2,
    Poisson,
    make_family,
)
from .links import (
    DBL_EPSILON,
    LINKS,
    CauchitLink,
    CloglogLink,
    IdentityLink,
    InverseLink,
    InverseSquaredLink,
    Link,
    LogitLink,
    LogLink,
    ProbitLink,
    SqrtLink,
    make_link,
)

# module-level link instances
logit = LINKS["logit"]
probit = LINKS["probit"]
cloglog = LINKS["cloglog"]
cauchit = LINKS["cauchit"]
log = LINKS["log"]
identity = LINKS["identity"]
sqrt = LINKS["sqrt"]
inverse = LINKS["inverse"]
inverse_squared = LINKS["1/mu^2"]

__all__ = [
    "Link", "Family", "make_family", "make_link", "LINKS", "FAMILIES", "ALLOWED_LINKS",
    "DBL_EPSILON",
    "LogitLink", "ProbitLink", "CauchitLink", "CloglogLink", "IdentityLink", "LogLink",
    "SqrtLink", "InverseLink", "InverseSquaredLink",
    "Poisson", "Binomial", "Gaussian", "Gamma", "InverseGaussian", "NegativeBinomial2",
    "logit", "probit", "cloglog", "cauchit", "log", "identity", "sqrt", "inverse",
    "inverse_squared",
]
