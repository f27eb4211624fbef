## Reference fixtures for pyglmm, from real lme4 / glmmTMB fits.
##
## Run from the repository root:
##     Rscript tests/reference/make_fixtures.R            # all models
##     Rscript tests/reference/make_fixtures.R cbpp_binom # only the listed ids
##
## Data are read from src/pyglmm/datasets/data/<name>.csv with the factor
## levels of <name>.levels.json, i.e. exactly the data pyglmm ships.
## One JSON file per model is written to tests/reference/fixtures/<id>.json.
## Doubles are written with 17 significant digits (they read back to the
## very same double).  A model that errors is recorded with its error message.

suppressPackageStartupMessages({
  library(lme4)
  library(glmmTMB)
  library(jsonlite)
})

args <- commandArgs(TRUE)
outdir <- file.path("tests", "reference", "fixtures")
dir.create(outdir, showWarnings = FALSE, recursive = TRUE)

## ---------------------------------------------------------------- data
source(file.path("tests", "reference", "common.R"))  # load_data(), datadir, JSON writers
DATA <- list()
getdata <- function(name) {
  if (is.null(DATA[[name]])) DATA[[name]] <<- load_data(name)
  DATA[[name]]
}

## ---------------------------------------------------------------- JSON
## numbers are pre-rendered with %.17g and spliced in verbatim

VERSIONS <- list(
  R = paste(R.version$major, R.version$minor, sep = "."),
  lme4 = packageDescription("lme4")$Version,
  glmmTMB = packageDescription("glmmTMB")$Version,
  TMB = packageDescription("TMB")$Version,
  Matrix = packageDescription("Matrix")$Version,
  MASS = packageDescription("MASS")$Version,
  platform = R.version$platform
)
local({
  si <- sessionInfo()
  cat("sessionInfo: ", si$R.version$version.string, "\n", sep = "")
  for (p in c("lme4", "glmmTMB", "TMB", "Matrix")) {
    v <- si$otherPkgs[[p]]$Version
    if (is.null(v)) v <- si$loadedOnly[[p]]$Version
    cat(sprintf("  %s %s\n", p, v))
  }
})

## ---------------------------------------------------------------- fitting
timed_fit <- function(fitfun, reps = 3) {
  warns <- character(0)
  times <- numeric(reps)
  m <- NULL
  for (r in seq_len(reps)) {
    gc()
    times[r] <- system.time(
      m <- withCallingHandlers(fitfun(), warning = function(w) {
        if (r == 1) warns <<- c(warns, conditionMessage(w))
        invokeRestart("muffleWarning")
      })
    )[["elapsed"]]
  }
  list(model = m, times = times, warnings = warns)
}

ranef_head <- function(re, n = 5) {
  lapply(re, function(df) {
    df <- as.data.frame(df)
    k <- min(n, nrow(df))
    list(levels = rownames(df)[seq_len(k)],
         values = lapply(as.list(df[seq_len(k), , drop = FALSE]), arr),
         nlevels = nrow(df))
  })
}

varcorr_rows <- function(vcdf) {
  lapply(seq_len(nrow(vcdf)), function(i) list(
    grp = vcdf$grp[i], var1 = if (is.na(vcdf$var1[i])) NULL else vcdf$var1[i],
    var2 = if (is.na(vcdf$var2[i])) NULL else vcdf$var2[i],
    vcov = vcdf$vcov[i], sdcor = vcdf$sdcor[i]))
}

## as.data.frame(VarCorr) layout for glmmTMB's list of covariance matrices
tmb_varcorr_df <- function(vclist) {
  out <- NULL
  for (g in names(vclist)) {
    S <- vclist[[g]]
    sds <- attr(S, "stddev"); nm <- colnames(S)
    for (i in seq_along(nm)) out <- rbind(out, data.frame(grp = g, var1 = nm[i], var2 = NA_character_, vcov = S[i, i], sdcor = sds[i]))
    if (length(nm) > 1) for (i in 1:(length(nm) - 1)) for (j in (i + 1):length(nm))
      out <- rbind(out, data.frame(grp = g, var1 = nm[i], var2 = nm[j], vcov = S[i, j], sdcor = S[i, j] / (sds[i] * sds[j])))
  }
  out
}

base_info <- function(spec) {
  list(id = spec$id, dataset = spec$dataset, formula = spec$formula,
       call = spec$call, method = spec$method, nAGQ = spec$nAGQ, REML = spec$REML,
       versions = VERSIONS)
}

lme4_summary <- function(m, spec, ft) {
  fam <- family(m)
  vc <- vcov(m)
  ll <- logLik(m)
  out <- base_info(spec)
  out$family <- fam$family
  out$link <- fam$link
  out$fixef <- fixef(m)
  out$se <- setNames(sqrt(diag(as.matrix(vc))), names(fixef(m)))
  out$vcov <- list(names = as.list(colnames(vc)), matrix = rows(vc))
  out$theta <- getME(m, "theta")
  out$beta <- getME(m, "beta")
  out$varcorr <- varcorr_rows(as.data.frame(VarCorr(m)))
  out$sigma <- sigma(m)
  out$logLik <- as.numeric(ll)
  out$logLik_df <- attr(ll, "df")
  out$AIC <- AIC(m)
  out$BIC <- BIC(m)
  ## for REML fits deviance(m) is (deprecated and) the REML criterion;
  ## deviance_ML is the ML deviance evaluated at the REML estimates
  out$deviance <- suppressWarnings(deviance(m))
  out$minus2logLik <- -2 * as.numeric(ll)
  if (isLMM(m) && isREML(m)) {
    out$REMLcrit <- as.numeric(REMLcrit(m))
    out$deviance_ML <- deviance(m, REML = FALSE)
  }
  out$df.resid <- df.residual(m)
  out$nobs <- nobs(m)
  out$ngroups <- as.list(ngrps(m))
  out$ranef <- ranef_head(ranef(m))
  out$fitted <- arr(head(fitted(m), 10))
  out$residuals <- list(deviance = arr(head(residuals(m, type = "deviance"), 10)),
                        pearson = arr(head(residuals(m, type = "pearson"), 10)),
                        response = arr(head(residuals(m, type = "response"), 10)))
  msgs <- m@optinfo$conv$lme4$messages
  out$convergence <- list(messages = if (is.null(msgs)) list() else as.list(msgs),
                          optimizer_code = m@optinfo$conv$opt,
                          optimizer = m@optinfo$optimizer,
                          feval = m@optinfo$feval,
                          warnings = as.list(m@optinfo$warnings))
  out$singular <- isSingular(m)
  if (grepl("Negative Binomial", fam$family)) out$shape <- getME(m, "glmer.nb.theta")
  out$dispersion <- if (fam$family %in% c("binomial", "poisson") || grepl("Negative Binomial", fam$family)) 1 else sigma(m)^2
  out$fit_warnings <- as.list(ft$warnings)
  out$timing <- list(elapsed_median = median(ft$times), elapsed = arr(ft$times), runs = length(ft$times))
  out
}

tmb_summary <- function(m, spec, ft) {
  fam <- family(m)
  ll <- logLik(m)
  vc <- vcov(m)$cond
  out <- base_info(spec)
  out$family <- fam$family
  out$link <- fam$link
  out$fixef <- fixef(m)$cond
  out$se <- setNames(sqrt(diag(vc)), names(fixef(m)$cond))
  out$vcov <- list(names = as.list(colnames(vc)), matrix = rows(vc))
  out$theta <- getME(m, "theta")
  out$varcorr <- varcorr_rows(tmb_varcorr_df(VarCorr(m)$cond))
  out$sigma <- sigma(m)
  out$dispersion <- sigma(m)
  if (grepl("nbinom", fam$family)) out$shape <- sigma(m)
  out$logLik <- as.numeric(ll)
  out$logLik_df <- attr(ll, "df")
  out$AIC <- AIC(m)
  out$BIC <- BIC(m)
  out$deviance <- tryCatch(deviance(m), error = function(e) NULL)
  out$minus2logLik <- -2 * as.numeric(ll)
  out$df.resid <- df.residual(m)
  out$nobs <- nobs(m)
  out$ngroups <- as.list(sapply(ranef(m)$cond, nrow))
  out$ranef <- ranef_head(ranef(m)$cond)
  out$fitted <- arr(head(fitted(m), 10))
  res <- list(pearson = arr(head(residuals(m, type = "pearson"), 10)),
              response = arr(head(residuals(m, type = "response"), 10)))
  dres <- tryCatch(residuals(m, type = "deviance"), error = function(e) NULL)
  if (!is.null(dres)) res$deviance <- arr(head(dres, 10))
  out$residuals <- res
  out$convergence <- list(messages = as.list(m$fit$message),
                          optimizer_code = m$fit$convergence,
                          pdHess = m$sdr$pdHess,
                          iterations = m$fit$iterations,
                          evaluations = as.list(m$fit$evaluations))
  out$singular <- NULL
  out$fit_warnings <- as.list(ft$warnings)
  out$timing <- list(elapsed_median = median(ft$times), elapsed = arr(ft$times), runs = length(ft$times))
  out
}

## ---------------------------------------------------------------- models
specs <- list()
add <- function(id, dataset, formula, call, method, fitfun, nAGQ = NULL, REML = NULL) {
  specs[[id]] <<- list(id = id, dataset = dataset, formula = formula, call = call,
                       method = method, fitfun = fitfun, nAGQ = nAGQ, REML = REML)
}
## lme4 GLMMs
f_cbpp <- "cbind(incidence, size - incidence) ~ period + (1 | herd)"
add("cbpp_binom", "cbpp", f_cbpp, "glmer(f, cbpp, family = binomial)", "glmer",
    function() glmer(as.formula(f_cbpp), getdata("cbpp"), family = binomial), nAGQ = 1)
add("cbpp_prop", "cbpp", "incidence/size ~ period + (1 | herd)",
    "glmer(f, cbpp, family = binomial, weights = size)", "glmer",
    function() glmer(incidence / size ~ period + (1 | herd), getdata("cbpp"), family = binomial,
                     weights = size), nAGQ = 1)
add("cbpp_probit", "cbpp", f_cbpp, "glmer(f, cbpp, family = binomial(link = \"probit\"))", "glmer",
    function() glmer(as.formula(f_cbpp), getdata("cbpp"), family = binomial(link = "probit")), nAGQ = 1)
add("cbpp_cloglog", "cbpp", f_cbpp, "glmer(f, cbpp, family = binomial(link = \"cloglog\"))", "glmer",
    function() glmer(as.formula(f_cbpp), getdata("cbpp"), family = binomial(link = "cloglog")), nAGQ = 1)
add("cbpp_agq25", "cbpp", f_cbpp, "glmer(f, cbpp, family = binomial, nAGQ = 25)", "glmer",
    function() glmer(as.formula(f_cbpp), getdata("cbpp"), family = binomial, nAGQ = 25), nAGQ = 25)
add("cbpp_agq0", "cbpp", f_cbpp, "glmer(f, cbpp, family = binomial, nAGQ = 0)", "glmer",
    function() glmer(as.formula(f_cbpp), getdata("cbpp"), family = binomial, nAGQ = 0), nAGQ = 0)
add("cbpp_pois_offset", "cbpp", "incidence ~ period + offset(log(size)) + (1 | herd)",
    "glmer(f, cbpp, family = poisson)", "glmer",
    function() glmer(incidence ~ period + offset(log(size)) + (1 | herd), getdata("cbpp"), family = poisson), nAGQ = 1)
## LMMs
add("sleep_reml", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "lmer(f, sleepstudy)", "lmer",
    function() lmer(Reaction ~ Days + (Days | Subject), getdata("sleepstudy")), REML = TRUE)
add("sleep_ml", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "lmer(f, sleepstudy, REML = FALSE)", "lmer",
    function() lmer(Reaction ~ Days + (Days | Subject), getdata("sleepstudy"), REML = FALSE), REML = FALSE)
add("sleep_uncorr", "sleepstudy", "Reaction ~ Days + (Days || Subject)", "lmer(f, sleepstudy)", "lmer",
    function() lmer(Reaction ~ Days + (Days || Subject), getdata("sleepstudy")), REML = TRUE)
add("dyestuff_reml", "dyestuff", "Yield ~ 1 + (1 | Batch)", "lmer(f, Dyestuff)", "lmer",
    function() lmer(Yield ~ 1 + (1 | Batch), getdata("dyestuff")), REML = TRUE)
add("penicillin_reml", "penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", "lmer(f, Penicillin)", "lmer",
    function() lmer(diameter ~ 1 + (1 | plate) + (1 | sample), getdata("penicillin")), REML = TRUE)
add("pastes_reml", "pastes", "strength ~ 1 + (1 | batch/cask)", "lmer(f, Pastes)", "lmer",
    function() lmer(strength ~ 1 + (1 | batch/cask), getdata("pastes")), REML = TRUE)
## more GLMMs
add("grouse_pois", "grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
    "glmer(f, grouseticks, family = poisson)", "glmer",
    function() glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION),
                     getdata("grouseticks"), family = poisson), nAGQ = 1)
add("verbagg_binom", "verbagg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
    "glmer(f, VerbAgg, family = binomial)", "glmer",
    function() glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item),
                     getdata("verbagg"), family = binomial), nAGQ = 1)
## nested (1 | id/btype): 948 id:btype levels, each in one id -> pyglmm's block-diagonal Schur path
add("verbagg_nested", "verbagg", "r2 ~ Anger + Gender + btype + situ + (1 | id/btype)",
    "glmer(f, VerbAgg, family = binomial)", "glmer",
    function() glmer(r2 ~ Anger + Gender + btype + situ + (1 | id/btype),
                     getdata("verbagg"), family = binomial), nAGQ = 1)
add("epil_pois", "epil", "y ~ lbase*trt + lage + V4 + (1 | subject)",
    "glmer(f, MASS::epil, family = poisson)", "glmer",
    function() glmer(y ~ lbase * trt + lage + V4 + (1 | subject), getdata("epil"), family = poisson), nAGQ = 1)
## rehab
rehab_f <- c(
  rehab_null = "incidents ~ 1 + (1 | rehab)",
  rehab_lower = "incidents ~ treatment + gender + (1 | rehab)",
  rehab_hours = "incidents ~ treatment + gender + hours + (1 | rehab)",
  rehab_slope = "incidents ~ treatment + gender + hours + (1 + treatment | rehab)",
  rehab_cross = "incidents ~ treatment + gender + hours + treatment:hours + (1 + treatment | rehab)")
for (id in names(rehab_f)) local({
  f <- rehab_f[[id]]
  add(id, "rehab", f, "glmer(f, rehab, family = poisson)", "glmer",
      function() glmer(as.formula(f), getdata("rehab"), family = poisson), nAGQ = 1)
})
## negative binomial
f_gnb <- "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)"
add("grouse_nb_tmb", "grouseticks", f_gnb, "glmmTMB(f, grouseticks, family = nbinom2)", "glmmTMB",
    function() glmmTMB(as.formula(f_gnb), getdata("grouseticks"), family = nbinom2))
add("grouse_nb_lme4", "grouseticks", f_gnb, "glmer.nb(f, grouseticks)", "glmer.nb",
    function() glmer.nb(as.formula(f_gnb), getdata("grouseticks")), nAGQ = 1)
## Gamma
add("gamma_tmb", "gamma_sim", "y ~ x + (1 | g)", "glmmTMB(f, gamma_sim, family = Gamma(link = \"log\"))", "glmmTMB",
    function() glmmTMB(y ~ x + (1 | g), getdata("gamma_sim"), family = Gamma(link = "log")))
add("gamma_lme4", "gamma_sim", "y ~ x + (1 | g)", "glmer(f, gamma_sim, family = Gamma(link = \"log\"))", "glmer",
    function() glmer(y ~ x + (1 | g), getdata("gamma_sim"), family = Gamma(link = "log")), nAGQ = 1)
add("rehab_nb_tmb", "rehab", "incidents ~ treatment + gender + hours + (1 | rehab)",
    "glmmTMB(f, rehab, family = nbinom2)", "glmmTMB",
    function() glmmTMB(incidents ~ treatment + gender + hours + (1 | rehab), getdata("rehab"), family = nbinom2))

## lme4 with PIRLS run to convergence (tolPwrss = 1e-12): lme4's default 1e-7 stops PIRLS
## early, which shifts its Laplace deviance by ~1e-4 and its Hessian-based standard errors by
## up to ~15% for non-canonical links; with a tight tolerance it computes the same objective as
## pyglmm, which the tests then require to agree closely.
for (id in names(specs)) local({
  sp <- specs[[id]]
  if (sp$method == "glmer" && identical(sp$nAGQ, 1)) {
    ff <- sp$fitfun
    add(paste0(id, "_tight"), sp$dataset, sp$formula,
        paste(sub(")$", "", sp$call), ", control = glmerControl(tolPwrss = 1e-12))"), "glmer",
        function() update(ff(), control = glmerControl(tolPwrss = 1e-12)), nAGQ = 1)
  }
})

## ---------------------------------------------------------------- run
ids <- if (length(args)) args else names(specs)
for (id in ids) {
  spec <- specs[[id]]
  if (is.null(spec)) { cat("unknown id", id, "\n"); next }
  res <- tryCatch({
    ft <- timed_fit(spec$fitfun)
    if (spec$method == "glmmTMB") tmb_summary(ft$model, spec, ft) else lme4_summary(ft$model, spec, ft)
  }, error = function(e) {
    o <- base_info(spec); o$error <- conditionMessage(e); o
  })
  write_fixture(res)
  if (!is.null(res$error)) {
    cat(sprintf("%-18s ERROR: %s\n", id, res$error))
  } else {
    cat(sprintf("%-18s logLik %.6f  time %.3fs  %s\n", id, res$logLik, res$timing$elapsed_median,
                paste(sprintf("%s=%.4f", names(res$fixef), res$fixef), collapse = " ")))
  }
}
