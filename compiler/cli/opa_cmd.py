"""``sekuire opa push|status``: OPA's management plane (opa-python-client, the extra ``[opa]``).

``push`` puts a verified, compiled policy into an OPA that is not
bundle-driven (its data, then its modules in dependency order); OPA refuses
paths a bundle owns, so a bundle-driven OPA is left alone. ``status`` shows
health, bundle readiness, the revision of every activated bundle and the
policies OPA holds. Decisions never go through here.
"""

from __future__ import annotations

import argparse
import os

from ..errors import CompileError
from ..files import read_limited
from .compile_cmd import add_extension_option, compiled_from
from .options import add_format_option, add_verify_options, policy_from, print_json

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    opa = sub.add_parser("opa", help="OPA's management plane").add_subparsers(dest="opa_command", metavar="SUBCOMMAND")
    opa.required = True
    push = opa.add_parser("push", help="push a compiled policy into an OPA that is not bundle-driven")
    push.add_argument("--url", required=True, help="the OPA server (http(s)://host:port)")
    push.add_argument("--file", default="policy.json", metavar="FILE", help="the policy.json to compile (default: policy.json)")
    _add_token_option(push)
    add_extension_option(push)
    add_verify_options(push)
    push.set_defaults(handler=_push)
    status = opa.add_parser("status", help="health, bundles and their revisions, policies of an OPA")
    status.add_argument("--url", required=True, help="the OPA server (http(s)://host:port)")
    _add_token_option(status)
    add_format_option(status)
    status.set_defaults(handler=_status)


def _add_token_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--token-file", metavar="FILE",
                        help="bearer token for OPA's token authentication (default: $SEKUIRE_OPA_TOKEN, if set)")


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        token = read_limited(args.token_file, 64 * 1024).decode("utf-8", "replace").strip()
        if not token:
            raise CompileError("the token file is empty", source=args.token_file)
        return token
    return os.environ.get("SEKUIRE_OPA_TOKEN") or None


def _push(args: argparse.Namespace) -> int:
    from ...runtime.opa_admin import push_policy

    compiled = compiled_from(args, policy_from(args, args.file))
    pushed = push_policy(args.url, compiled, token=_token(args))
    print(f"Pushed {len(pushed)} modules and the data of workspace {compiled.workspace_id} to {_shown(args.url)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from ...runtime.opa_admin import status

    report = status(args.url, token=_token(args))
    if args.format == "json":
        print_json(report)
    else:
        print(f"OPA {_shown(args.url)}: {'healthy' if report['healthy'] else 'NOT healthy'}, "
              f"bundles {'activated' if report['bundles_ready'] else 'NOT all activated'}")
        for name, revision in sorted(report["bundles"].items()):
            print(f"  bundle {name}: revision {revision}")
        print(f"  {len(report['policies'])} policy modules")
    return 0 if report["healthy"] and report["bundles_ready"] else 1


def _shown(url: str) -> str:
    from ..textsafe import redact_url

    return redact_url(url)
