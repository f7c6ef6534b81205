"""Command line: `chargemanager run`, `chargemanager set-password`."""

import argparse
import getpass
import logging
import signal
import sys
import time


def setup_logging(level=logging.INFO):
    """Plain, greppable lines on stderr: `2026-11-22T02:40:54.123Z INFO http: message`."""
    handler = logging.StreamHandler(sys.stderr)
    formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s",
                                  datefmt="%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def cmd_run(args):
    from chargemanager.runtime import Runtime

    runtime = Runtime(args.data, http_port=args.http_port, ocpp_port=args.ocpp_port, host=args.host)

    def on_signal(signum, frame):
        logging.getLogger("runtime").info("signal %d: stopping", signum)
        runtime.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runtime.run()
    return 0


def cmd_set_password(args):
    from chargemanager.adapters.auth import AdminAuth, PasswordError
    from chargemanager.adapters.store import DataStore

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("New admin password: ")
        if getpass.getpass("Again: ") != password:
            print("the two passwords differ; nothing changed", file=sys.stderr)
            return 1
    try:
        AdminAuth(DataStore(args.data)).set_password(password)
    except PasswordError as exc:
        print("password refused: %s; nothing changed" % exc, file=sys.stderr)
        return 1
    print("admin password set (a running manager picks it up after a restart)")
    return 0


def cmd_update(args):
    from chargemanager.adapters import updater

    argv = ["install", args.bundle] + (["--force"] if args.force else []) + (["--reboot"] if args.reboot else [])
    return updater.main(argv)


def build_parser():
    parser = argparse.ArgumentParser(prog="chargemanager", description="EV charging manager appliance")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the charging manager")
    run.add_argument("--data", required=True, help="data folder (/data on the appliance)")
    run.add_argument("--http-port", type=int, default=None, help="HTTP port (default: from the configuration, 80)")
    run.add_argument("--ocpp-port", type=int, default=None, help="OCPP port (default: from the configuration, 19520)")
    run.add_argument("--host", default="0.0.0.0", help="address to listen on")
    run.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run.set_defaults(func=cmd_run)
    pw = sub.add_parser("set-password", help="set the admin password")
    pw.add_argument("--data", required=True, help="data folder")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    pw.set_defaults(func=cmd_set_password)
    up = sub.add_parser("update", help="install a signed update bundle into the inactive root slot (appliance, root)")
    up.add_argument("bundle", help="*.cmbundle file")
    up.add_argument("--force", action="store_true", help="allow the same or an older version")
    up.add_argument("--reboot", action="store_true", help="reboot into the new version when installed")
    up.set_defaults(func=cmd_update)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    setup_logging(getattr(logging, getattr(args, "log_level", "INFO")))
    return args.func(args)
