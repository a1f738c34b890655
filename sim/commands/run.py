"""Placeholder for `gpusim run` while it is being written."""
from workloads.errors import InputError

NAME = "run"
HELP = "(run: being written)"


def add_arguments(parser):
    pass


def run(args):
    raise InputError("'run' is not available yet", "gpusim run", "use another command")
