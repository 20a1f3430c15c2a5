"""Drive a container-mode node through its API seam: boot, reboot, boot again, shut down.

Runs as PID 1 (under unshare) in place of the talos-init console script, with the same start-up
as ``talos_init.boot.boot_node`` (signals blocked first), and calls ``Node.reboot()`` and
``Node.shutdown()`` the way the machine API will.

    reboot_driver.py STATE_DIR SERVICES_DIR CONFIG
"""

import asyncio
import sys
from pathlib import Path

from talos_init import sigloop
from talos_init.configsource import fetch
from talos_init.logring import Console
from talos_init.node import Node, NodeOptions
from talos_init.services import load_services_dir


async def drive(node: Node) -> int:
    runner = asyncio.get_running_loop().create_task(node.run())
    await node.wait_booted(1)
    node.console.log("driver: asking for a reboot")
    node.reboot()
    await node.wait_booted(2)
    node.console.log("driver: asking for a shutdown")
    node.shutdown()
    return await runner


def main() -> int:
    mask = sigloop.block_signals()
    state, services, config = (Path(a) for a in sys.argv[1:4])
    options = NodeOptions(mode="container", state_dir=state)
    options.config_text = (fetch(f"file://{config}"), str(config))
    options.services, options.service_problems = load_services_dir(services)
    return asyncio.run(drive(Node(options, Console(), mask)))


if __name__ == "__main__":
    sys.exit(main())
