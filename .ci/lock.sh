#!/usr/bin/env bash
# requirements-lock.txt: the exact versions of codemix's dependencies (setup.py with the
# [test] and [tpu] extras) as installed in the environment the tests ran in. Run inside
# that environment after changing setup.py; `uv` resolves setup.py with the installed
# versions as constraints, so the lock holds what ran (tests/test_packaging.py checks
# that it covers setup.py and matches what is installed). setuptools, wheel and pip are left
# out: pip passes PIP_CONSTRAINT on to the isolated builds of source packages, whose own
# build requirements (newer setuptools) a pin would break.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v uv >/dev/null || python -m pip install -q uv
installed=$(mktemp)
trap 'rm -f "$installed"' EXIT
# Everything installed except codemix itself, the lock tool and test-only helpers of other issues.
python -m pip freeze --all --exclude-editable | grep -viE '^(uv|codemix)==' > "$installed"
uv pip compile setup.py --extra test --extra tpu -c "$installed" --python-version 3.11 \
  --python-platform x86_64-manylinux_2_31 --no-emit-package setuptools --no-emit-package wheel --no-emit-package pip --annotation-style line --no-header -q -o requirements-lock.txt.new
{
  echo "# The exact versions the tests ran (setup.py with [test] and [tpu]), made by .ci/lock.sh."
  echo "# .ci/run installs with it as pip constraints (PIP_CONSTRAINT), as do the TPU and SLURM"
  echo "# set-ups; requirements-data.txt's packages are installed --no-deps and are not in it."
  # (the temporary constraints file is no reason worth keeping in the annotations)
  sed -E "s#-c /[^ ,]*(, )?##; s#, *\$##; s#  *\# via *\$##" requirements-lock.txt.new
} > requirements-lock.txt
rm requirements-lock.txt.new
