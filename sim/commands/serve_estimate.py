"""Placeholder for `gpusim serve-estimate` while it is being written."""
from workloads.errors import InputError

NAME = "serve-estimate"
HELP = "(serve-estimate: being written)"


def add_arguments(parser):
    pass


def run(args):
    raise InputError("'serve-estimate' is not available yet", "gpusim serve-estimate", "use another command")
