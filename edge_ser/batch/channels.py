"""Channel roles: which channel of a recording carries which speaker.

A mapping is written `agent=0,customer=1` (role=channel index, 0-based). Without one, a mono
recording is one role `speaker` and a stereo one is `agent=0,customer=1`; a recording with more
channels needs a mapping.
"""

from __future__ import annotations

import re

ChannelRoles = tuple[tuple[str, int], ...]
"""((role, channel index), ...) in channel order."""

MONO_ROLES: ChannelRoles = (("speaker", 0),)
STEREO_ROLES: ChannelRoles = (("agent", 0), ("customer", 1))

_ROLE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class RecordingError(ValueError):
    """A recording that cannot be processed as asked (e.g. its channels do not fit the roles)."""


def parse_roles(text: str) -> ChannelRoles:
    """`agent=0,customer=1` -> (("agent", 0), ("customer", 1)); ValueError naming the bad part."""
    roles: dict[str, int] = {}
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        role, sep, index = part.partition("=")
        role, index = role.strip(), index.strip()
        if not sep or not _ROLE.match(role) or not index.isdigit():
            raise ValueError(f"channel roles: bad entry {part!r} in {text!r}; expected "
                             "role=index pairs such as agent=0,customer=1 (roles: letters, "
                             "digits, '_' or '-')")
        if role in roles:
            raise ValueError(f"channel roles: role {role!r} given twice in {text!r}")
        if int(index) in roles.values():
            raise ValueError(f"channel roles: channel {index} given two roles in {text!r}")
        roles[role] = int(index)
    if not roles:
        raise ValueError(f"channel roles: {text!r} names no channel; expected e.g. agent=0")
    return tuple(sorted(roles.items(), key=lambda item: item[1]))


def format_roles(roles: ChannelRoles) -> str:
    return ",".join(f"{role}={index}" for role, index in roles)


def resolve_roles(num_channels: int, own: ChannelRoles | None,
                  default: ChannelRoles | None) -> ChannelRoles:
    """The roles for a recording with `num_channels` channels.

    `own` (from the recording's manifest row) must fit the recording. `default` (the batch's
    `--channels`) applies when it fits; otherwise a mono recording is `speaker` and a stereo one
    agent/customer. Any other layout is a RecordingError that says how to map it.
    """
    if own is not None:
        _check_fits(own, num_channels, "the manifest's channel roles")
        return own
    if default is not None and _fits(default, num_channels):
        return default
    if num_channels == 1:
        return MONO_ROLES
    if num_channels == 2 and default is None:
        return STEREO_ROLES
    if default is not None:
        _check_fits(default, num_channels, "--channels")
    raise RecordingError(f"{num_channels} channels and no channel roles for them; map them with "
                         "--channels role=index,... (e.g. agent=0,customer=1) or a 'channels' "
                         "column in the manifest")


def _fits(roles: ChannelRoles, num_channels: int) -> bool:
    return all(index < num_channels for _, index in roles)


def _check_fits(roles: ChannelRoles, num_channels: int, source: str) -> None:
    if not _fits(roles, num_channels):
        raise RecordingError(f"{source} {format_roles(roles)} name channel "
                             f"{max(i for _, i in roles)} but the recording has {num_channels} "
                             "channel(s) (indices start at 0)")
