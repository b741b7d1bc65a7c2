#!/usr/bin/env bash
# Regenerate NAMESPACE and man/ from the roxygen comments in R/.
set -euo pipefail
cd "$(dirname "$0")/.."
Rscript -e 'roxygen2::roxygenise(roclets = c("rd", "namespace"))'
