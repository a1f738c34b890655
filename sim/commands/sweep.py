"""Placeholder for `gpusim sweep` while it is being written."""
from workloads.errors import InputError

NAME = "sweep"
HELP = "(sweep: being written)"


def add_arguments(parser):
    pass


def run(args):
    raise InputError("'sweep' is not available yet", "gpusim sweep", "use another command")
