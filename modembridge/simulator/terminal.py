"""The simulated module's serial port: the master side of a pseudo-terminal.

The host opens the slave (``/dev/pts/N``, or the ``--link`` symlink pointing at it)
with pyserial exactly as it would open ``/dev/ttyUSB2``. The slave is put in raw mode
so the line discipline passes CR and LF through untouched. The simulator keeps its
own descriptor on the slave open: without it the master reads EIO whenever the host
has closed the port, and the node could vanish between two opens by the host.

Closing the terminal closes both sides, so the device node disappears the way a USB
serial port does when the module resets; a new terminal is a new node, and the link
is repointed at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import tty
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

_READ_SIZE = 4096


class PseudoTerminal:
    """One pseudo-terminal whose master is read and written on the running loop."""

    def __init__(
        self, data_received: Callable[[bytes], None], link: str | None = None
    ) -> None:
        self._data_received = data_received
        self._link = link
        self._master = -1
        self._slave = -1
        self.slave_path = ""
        self._writable: asyncio.Event = asyncio.Event()

    @property
    def path(self) -> str:
        """The path the host opens: the link when one was asked for."""
        return self._link or self.slave_path

    @property
    def name(self) -> str:
        """The device as log lines name it: ``pts/7``, or the link's file name."""
        if self._link:
            return os.path.basename(self._link)
        return self.slave_path.removeprefix("/dev/")

    @property
    def is_open(self) -> bool:
        """True while the device node exists."""
        return self._master >= 0

    def open(self) -> None:
        """Create the pty, make it raw and non-blocking, and start reading it."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.slave_path = os.ttyname(self._slave)

        loop = asyncio.get_running_loop()
        loop.add_reader(self._master, self._readable)
        self._writable.set()
        if self._link:
            _point_link(self._link, self.slave_path)
        logger.info("modem[%s]: terminal open at %s", self.name, self.slave_path)

    def close(self) -> None:
        """Remove the device node: close both sides and the link."""
        if self._master < 0:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._master)
        loop.remove_writer(self._master)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1
        self._writable.set()
        if self._link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._link)
        logger.info("modem[%s]: terminal closed (%s gone)", self.name, self.slave_path)

    async def write(self, data: bytes) -> None:
        """Write all of ``data``, waiting while the slave side's buffer is full."""
        view = memoryview(data)
        while view and self._master >= 0:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                await self._wait_writable()
                continue
            except OSError as error:
                logger.debug("modem[%s]: write failed: %s", self.name, error)
                return
            view = view[written:]

    async def _wait_writable(self) -> None:
        """Sleep until the master accepts bytes again."""
        loop = asyncio.get_running_loop()
        self._writable.clear()
        loop.add_writer(self._master, self._became_writable)
        await self._writable.wait()

    def _became_writable(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_writer(self._master)
        self._writable.set()

    def _readable(self) -> None:
        try:
            data = os.read(self._master, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as error:
            # EIO means no one has the slave open; our own slave fd prevents it,
            # but a closed host side must never stop the simulator.
            if error.errno != errno.EIO:
                logger.warning("modem[%s]: read failed: %s", self.name, error)
            return
        if data:
            self._data_received(data)


def _point_link(link: str, target: str) -> None:
    """Make ``link`` a symlink to ``target``, replacing any old one atomically."""
    path = Path(link)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.symlink_to(target)
    temporary.replace(path)
