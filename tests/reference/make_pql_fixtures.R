## Reference fixtures for pyglmm.glmmPQL, from real MASS::glmmPQL fits.
##
## Run from the repository root:
##     Rscript tests/reference/make_pql_fixtures.R            # all models
##     Rscript tests/reference/make_pql_fixtures.R pql_cbpp   # only the listed ids
##
## Data are read exactly as in make_fixtures.R (the CSV files pyglmm ships, with
## the factor levels of <name>.levels.json).  One JSON file per model is written
## to tests/reference/fixtures/<id>.json, doubles with 17 significant digits.
##
## glmmPQL calls nlme::lme(method = "ML", weights = varFixed(~invwt)) at most
## `niter` (10) times and stops when sum((eta - etaold)^2) < 1e-6 * sum(eta^2).
## The number of lme fits is counted from its verbose "iteration i" messages.

suppressPackageStartupMessages({
  library(MASS)
  library(nlme)
  library(jsonlite)
})

args <- commandArgs(TRUE)
outdir <- file.path("tests", "reference", "fixtures")
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

source(file.path("tests", "reference", "common.R"))  # load_data(), datadir, JSON writers


VERSIONS <- list(
  R = paste(R.version$major, R.version$minor, sep = "."),
  MASS = packageDescription("MASS")$Version,
  nlme = packageDescription("nlme")$Version,
  platform = R.version$platform
)

## id, dataset, pyglmm (lme4-syntax) formula, glmmPQL fixed / random, family
specs <- list(
  list(id = "pql_cbpp", dataset = "cbpp",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
       fixed = cbind(incidence, size - incidence) ~ period, random = ~ 1 | herd,
       family = "binomial"),
  list(id = "pql_cbpp_offset", dataset = "cbpp",
       formula = "incidence ~ period + offset(log(size)) + (1 | herd)",
       fixed = incidence ~ period + offset(log(size)), random = ~ 1 | herd, family = "poisson"),
  list(id = "pql_epil", dataset = "epil",
       formula = "y ~ lbase*trt + lage + V4 + (1 | subject)",
       fixed = y ~ lbase * trt + lage + V4, random = ~ 1 | subject, family = "poisson"),
  list(id = "pql_rehab", dataset = "rehab",
       formula = "incidents ~ treatment + gender + hours + (1 | rehab)",
       fixed = incidents ~ treatment + gender + hours, random = ~ 1 | rehab,
       family = "poisson"),
  list(id = "pql_rehab_slope", dataset = "rehab",
       formula = "incidents ~ treatment + gender + hours + (1 + treatment | rehab)",
       fixed = incidents ~ treatment + gender + hours, random = ~ 1 + treatment | rehab,
       family = "poisson")
)

for (s in specs) {
  if (length(args) && !(s$id %in% args)) next
  cat("fitting", s$id, "\n")
  d <- load_data(s$dataset)
  fam <- get(s$family)()
  niter_used <- 0L
  warns <- character(0)
  m <- withCallingHandlers(
    glmmPQL(s$fixed, random = s$random, family = fam, data = d, verbose = TRUE),
    message = function(msg) {
      if (grepl("^iteration", conditionMessage(msg))) niter_used <<- niter_used + 1L
      invokeRestart("muffleMessage")
    },
    warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      invokeRestart("muffleWarning")
    })
  ## exact random-effects covariance (VarCorr() returns rounded character strings)
  S <- unclass(getVarCov(m, type = "random.effects"))
  S <- matrix(as.numeric(S), nrow(S), dimnames = list(rownames(S), colnames(S)))
  re_sd <- setNames(sqrt(diag(S)), rownames(S))
  corr <- NULL
  if (nrow(S) > 1) {
    C <- cov2cor(S)
    corr <- C[lower.tri(C)]             # by column, as lme4's theta order
  }
  V <- vcov(m)
  eta <- as.numeric(fitted(m))            # link scale, innermost level (glmmPQL adds the offset)
  re <- ranef(m)
  obj <- list(
    id = s$id, dataset = s$dataset, formula = s$formula,
    call = sprintf("glmmPQL(%s, random = %s, family = %s, data = %s)",
                   deparse(s$fixed), deparse(s$random), s$family, s$dataset),
    method = "glmmPQL", versions = VERSIONS, family = fam$family, link = fam$link,
    nobs = nrow(d), ngroups = as.list(setNames(as.integer(m$dims$ngrps[seq_len(m$dims$Q)]),
                                              names(m$dims$ngrps)[seq_len(m$dims$Q)])),
    niter = 10L, iterations = niter_used,
    fixef = fixef(m), se = sqrt(diag(V)),
    vcov = list(names = colnames(V), matrix = rows(V)),
    re_sd = re_sd, re_cov = list(names = rownames(S), matrix = rows(S)),
    re_corr = if (is.null(corr)) NULL else arr(corr),
    residual_sd = m$sigma,
    ranef = list(levels = rownames(re)[seq_len(min(5, nrow(re)))],
                 values = lapply(as.list(re[seq_len(min(5, nrow(re))), , drop = FALSE]), arr),
                 nlevels = nrow(re)),
    fitted_link_head = arr(head(eta, 10)),
    fitted_head = arr(head(fam$linkinv(eta), 10)),
    warnings = warns
  )
  write_fixture(obj)
  cat(sprintf("  %d lme fits, residual sd %.6g\n", niter_used, m$sigma))
}
