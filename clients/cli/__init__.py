"""attache: the user's command line."""

from __future__ import annotations

import click

from clients.cli.audit import audit
from clients.cli.authority import authority
from clients.cli.channels import channel
from clients.cli.committees import committee
from clients.cli.devices import device
from clients.cli.documents import doc
from clients.cli.history import history_window_command, share_history_command
from clients.cli.meetings import meeting
from clients.cli.messages import listen_command, message_group, read_command, send_command
from clients.cli.policy import policy
from clients.cli.releases import release
from clients.cli.session import enroll_command, login_command, logout_command, whoami_command
from clients.cli.users import user
from clients.cli.witnesses import witness


class _Main(click.Group):
    """The command group, which says a file the system could not use in one sentence (a
    path too long, a directory, no permission, a full disk) instead of a traceback, wherever
    in a command it was met."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except OSError as exc:
            what = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{what}{exc.strerror or exc}") from exc


@click.group(cls=_Main)
@click.version_option(package_name="attache")
def main() -> None:
    """Attaché: labelled, end-to-end encrypted messaging for liaison offices."""


main.add_command(authority)
main.add_command(enroll_command)
main.add_command(login_command)
main.add_command(logout_command)
main.add_command(whoami_command)
main.add_command(user)
main.add_command(device)
channel.add_command(share_history_command)
channel.add_command(history_window_command)
main.add_command(channel)
main.add_command(committee)
main.add_command(meeting)
main.add_command(send_command)
main.add_command(read_command)
main.add_command(listen_command)
main.add_command(message_group)
main.add_command(audit)
main.add_command(doc)
main.add_command(release)
main.add_command(policy)
main.add_command(witness)
