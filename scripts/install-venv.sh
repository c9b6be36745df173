#!/bin/sh
# Install the project (with its dev extra) into the venv VENV with uv, or with pip where uv
# cannot be had or cannot see what pip sees.
#
# uv installs in parallel (40 s here against 100 s for pip) but reads no pip configuration, so
# pip's own settings, from its files and PIP_* variables, are handed to it: find-links (where
# a machine may keep its torch wheel: torch==2.13.0 is otherwise PyPI's CUDA build), extra
# indexes (compared across indexes, as pip does) and constraints. A replaced or disabled main
# index is left to pip. The bytecode is compiled at install: with PYTHONDONTWRITEBYTECODE=1
# every process would otherwise compile torch again. USE_UV=0 asks for pip.
#
# usage: scripts/install-venv.sh VENV [SPEC]   (SPEC defaults to '.[dev]')
set -eu
venv=$1
spec=${2:-.[dev]}
pip="$venv/bin/pip"

# pip's value of one setting, from every source ("global.find-links='...'", ":env:.find-links").
setting() { printf '%s\n' "$cfg" | sed -n "s/^[^.]*\.$1='\(.*\)'\$/\1/p"; }

if [ "${USE_UV:-1}" = 1 ] && cfg=$("$pip" config list 2>/dev/null) \
    && [ -z "$(setting index-url)$(setting no-index)" ] \
    && "$pip" install -q 'uv>=0.5,<1'; then
    set --
    for link in $(setting find-links); do set -- "$@" --find-links "$link"; done
    for url in $(setting extra-index-url); do set -- "$@" --extra-index-url "$url"; done
    for file in $(setting constraint); do set -- "$@" --constraint "$file"; done
    if "$venv/bin/uv" pip install -q --compile-bytecode --index-strategy unsafe-best-match \
        --python "$venv/bin/python" "$@" -e "$spec"; then
        echo "setup: installed with uv"
        exit 0
    fi
fi
echo "setup: installing with pip"
"$pip" install -q -e "$spec"
