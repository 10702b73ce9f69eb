"""`streamctl config show|set|unset|use`: the profiles in config.toml."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from streamctl.cli.common import OutputOpt, ProfileOpt, check_output, print_json, stdout
from streamctl.cli.exit_codes import UsageProblem, help_epilog
from streamctl.client.profiles import (
    PROFILE_KEYS,
    config_path,
    load_config,
    save_config,
    valid_profile_name,
)

config_app = typer.Typer(
    help="Show and change settings; one profile per access server / cluster.",
    no_args_is_help=True,
    epilog=help_epilog(),
)


def _profile_name(profile: str | None) -> str:
    name = profile or load_config().default_profile
    if not valid_profile_name(name):
        raise UsageProblem(
            f"profile name {name!r} is not valid",
            hint="use letters, digits, '-', '_' or '.'",
            code="usage",
        )
    return name


@config_app.command("show", epilog=help_epilog())
def show(
    profile: ProfileOpt = None,
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Show every profile.", metavar="")
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Show the settings of a profile (or all of them) and where the file is."""
    fmt = check_output(output)
    config = load_config()
    name = _profile_name(profile)
    names = sorted(config.profiles) if all_ else [name]
    data = {
        "path": str(config_path()),
        "default_profile": config.default_profile,
        "profiles": {n: config.profile(n) for n in names},
    }
    if fmt == "json":
        print_json(data)
        return
    stdout.print(f"config file:     {data['path']}")
    stdout.print(f"default profile: {config.default_profile}")
    for n in names:
        table = Table(title=f"profile {n}", title_justify="left", box=None, pad_edge=False)
        table.add_column("KEY")
        table.add_column("VALUE")
        table.add_column("MEANING", style="dim")
        settings = config.profile(n)
        for key, meaning in PROFILE_KEYS.items():
            table.add_row(key, settings.get(key, "-"), meaning)
        stdout.print(table)


@config_app.command("set", epilog=help_epilog())
def set_(
    key: Annotated[str, typer.Argument(help=f"One of: {', '.join(PROFILE_KEYS)}.", metavar="KEY")],
    value: Annotated[str, typer.Argument(help="The new value.", metavar="VALUE")],
    profile: ProfileOpt = None,
) -> None:
    """Set one setting of a profile (the default profile unless --profile)."""
    config = load_config()
    name = _profile_name(profile)
    config.set(name, key, value)
    save_config(config)
    stdout.print(f"{name}: {key} = {value}")


@config_app.command("unset", epilog=help_epilog())
def unset(
    key: Annotated[str, typer.Argument(help="The setting to remove.", metavar="KEY")],
    profile: ProfileOpt = None,
) -> None:
    """Remove one setting from a profile."""
    config = load_config()
    name = _profile_name(profile)
    if config.unset(name, key):
        save_config(config)
        stdout.print(f"{name}: {key} removed")
    else:
        stdout.print(f"{name}: {key} was not set")


@config_app.command("use", epilog=help_epilog())
def use(
    profile_name: Annotated[
        str, typer.Argument(help="Profile to use by default.", metavar="PROFILE")
    ],
) -> None:
    """Make a profile the default one (STREAMCTL_PROFILE and --profile still override it)."""
    name = _profile_name(profile_name)
    config = load_config()
    config.default_profile = name
    config.profiles.setdefault(name, {})
    save_config(config)
    stdout.print(f"default profile: {name}")
