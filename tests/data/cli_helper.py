"""Run the data/vocab subcommands in-process without importing every other
command module (codemix.main imports all of them)."""
import argparse
import importlib

MODULES = {"data": "codemix.commands.data", "vocab": "codemix.commands.vocab"}


def main(argv):
    module = importlib.import_module(MODULES[argv[0]])
    parser = argparse.ArgumentParser(prog=f"codemix {argv[0]}")
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(argv[1:])) or 0)
