"""Placeholder for `gpusim validate` while it is being written."""
from workloads.errors import InputError

NAME = "validate"
HELP = "(validate: being written)"


def add_arguments(parser):
    pass


def run(args):
    raise InputError("'validate' is not available yet", "gpusim validate", "use another command")
