#!/usr/bin/env bash
# Install MatterSim 1.2.3 without its declared dependencies, which would replace torch and add torchvision,
# torchaudio, wandb and azure packages. What its force field and relaxers import comes from the `relax` extra,
# so install that first. Usage: scripts/install-mattersim.sh [PYTHON]  (default: python3 on PATH)
set -euo pipefail
PYTHON=${1:-python3}
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps mattersim==1.2.3
"$PYTHON" -c 'from mattersim.forcefield.potential import Potential; from mattersim.applications.batch_relax import BatchRelaxer'
