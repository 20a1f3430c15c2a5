"""The qemu provisioner: each node a QEMU virtual machine that boots the Talos image, installs
to its own sparse virtual disk and reboots from it.

- :mod:`~talos_cluster.qemu.vm`: QEMU's command line (pure), the accelerator probe, QMP, and
  what a VM is doing as its serial console shows it;
- :mod:`~talos_cluster.qemu.network`: taps on the cluster's bridge, the DHCP host list, and
  the daemons on the gateway (Debian's dnsmasq, :mod:`~talos_cluster.qemu.httpd`);
- :mod:`~talos_cluster.qemu.proc`: starting those processes detached and stopping them;
- :mod:`~talos_cluster.qemu.provision`: ``create``'s steps and ``destroy``.
"""
