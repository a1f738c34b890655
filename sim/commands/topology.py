"""Placeholder for `gpusim topology` while it is being written."""
from workloads.errors import InputError

NAME = "topology"
HELP = "(topology: being written)"


def add_arguments(parser):
    pass


def run(args):
    raise InputError("'topology' is not available yet", "gpusim topology", "use another command")
