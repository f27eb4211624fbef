"""pyglmm: generalized linear mixed models with lme4 formulas."""
