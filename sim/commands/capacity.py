"""Placeholder for `gpusim capacity` while it is being written."""
from workloads.errors import InputError

NAME = "capacity"
HELP = "(capacity: being written)"


def add_arguments(parser):
    pass


def run(args):
    raise InputError("'capacity' is not available yet", "gpusim capacity", "use another command")
