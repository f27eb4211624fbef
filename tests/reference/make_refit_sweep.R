## lme4 fits of the simulated responses of make_refit_sweep.py (see there). From the repo root:
##     Rscript tests/reference/make_refit_sweep.R
suppressPackageStartupMessages({ library(lme4); library(glmmTMB); library(jsonlite) })
source(file.path("tests", "reference", "common.R"))
dir <- file.path("tests", "reference", "sweep")
cases <- fromJSON(file.path(dir, "cases.json"), simplifyVector = FALSE)
res <- list()
for (cid in names(cases)) {
  cs <- cases[[cid]]
  sim <- read.csv(file.path(dir, paste0(cid, ".csv")))
  if (is.null(cs$dataset)) {           # simulated design: covariates stored with the responses
    d <- sim[c("x", "g", "h", "w", "t")]; d$g <- factor(d$g); d$h <- factor(d$h)
    sim <- sim[grep("^ysim", names(sim))]
  } else d <- load_data(cs$dataset)
  ll <- numeric(0)
  for (y in names(sim)) {
    d[[y]] <- sim[[y]]
    f <- as.formula(gsub("\\{y\\}", y, cs$template))
    m <- tryCatch(suppressMessages(suppressWarnings(
      if (cs$kind %in% c("REML", "ML") && !is.null(cs$weights)) lmer(f, d, REML = cs$kind == "REML", weights = w)
      else if (cs$kind %in% c("REML", "ML")) lmer(f, d, REML = cs$kind == "REML")
      else if (cs$kind == "nbinom2") glmmTMB(f, d, family = nbinom2)
      else if (startsWith(cs$kind, "Gamma")) glmmTMB(f, d, family = Gamma(link = "log"))
      else glmer(f, d, family = cs$kind))), error = function(e) NULL)
    ll <- c(ll, if (is.null(m)) NA else as.numeric(logLik(m)))
  }
  res[[cid]] <- ll
}
res$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     glmmTMB = as.character(packageVersion("glmmTMB")))
writeLines(toJSON(res, digits = I(17), auto_unbox = TRUE), file.path(dir, "lme4_loglik.json"))
