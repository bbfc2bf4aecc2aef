"""Checks made before any model loads: keys of every role a command calls, local models and adapters, the cache,
output folders, and the seed against the target's context window."""

from a3cli.preflight._check import PreflightError, check_api_keys, check_writable, pending_stages, preflight
from a3cli.preflight._context import check_seed_fits, context_window
from a3cli.preflight._quantisation import QuantisationUnavailable, check_4bit
from a3cli.preflight._roles import RoleUse, roles_for, stage_roles

__all__ = [
    "PreflightError",
    "QuantisationUnavailable",
    "RoleUse",
    "check_4bit",
    "check_api_keys",
    "check_seed_fits",
    "check_writable",
    "context_window",
    "pending_stages",
    "preflight",
    "roles_for",
    "stage_roles",
]
