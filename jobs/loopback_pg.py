"""The torch.distributed process group of `dsllm train --workers N` on one machine, on loopback only.

Ray Train's own set-up (`ray.train.torch.config._TorchBackend.on_start`) points every worker at
`MASTER_ADDR=<node address>` and lets rank 0 create the rendezvous `TCPStore`, whose server socket
listens on every interface (`*:PORT`, whatever MASTER_ADDR says); gloo and NCCL then bind the address
the host name resolves to, which on most machines is the network interface. When the Ray cluster is
the command's own in-process one (everything on this machine), `LoopbackTorchConfig` replaces that
set-up:

- rank 0 binds a socket to 127.0.0.1 on a free port itself and hands it to
  `TCPStore(..., master_listen_fd=...)`, so the store listens on loopback only;
- every worker sets `GLOO_SOCKET_IFNAME` / `NCCL_SOCKET_IFNAME` to the loopback interface, so the
  collective transports listen there too;
- every worker joins with `init_process_group(backend, store=...)`.

On a cluster (`--ray-address`, or a submitted job) Ray Train's set-up is used unchanged: ranks on
other nodes must reach rank 0 over the network. NCCL on one machine with loopback is "not yet run on
a GPU"; gloo on CPUs is what the tests run.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket

from ray.train.torch import TorchConfig
from ray.train.torch.config import _TorchBackend

# rank 0's listening socket; kept referenced for the life of the worker (the store serves from it)
_LISTENER: socket.socket | None = None


def loopback_interface() -> str:
    """The name of the interface that carries 127.0.0.1 (`lo` on Linux, `lo0` on macOS)."""
    import psutil

    for name, addrs in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == "127.0.0.1" for a in addrs):
            return name
    return "lo"


def _pin_transports_to_loopback() -> None:
    iface = loopback_interface()
    os.environ["GLOO_SOCKET_IFNAME"] = iface
    os.environ["NCCL_SOCKET_IFNAME"] = iface


def _bind_store_socket() -> int:
    """Rank 0: a listening socket on 127.0.0.1 at a free port; returns the port."""
    global _LISTENER
    if _LISTENER is not None:
        _LISTENER.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    _LISTENER = sock
    return sock.getsockname()[1]


def _join(backend: str, rank: int, world_size: int, port: int, timeout_s: int) -> None:
    import torch.distributed as dist

    timeout = datetime.timedelta(seconds=timeout_s)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    if rank == 0:
        assert _LISTENER is not None
        store = dist.TCPStore("127.0.0.1", port, world_size, True, timeout, master_listen_fd=_LISTENER.fileno())
    else:
        store = dist.TCPStore("127.0.0.1", port, world_size, False, timeout)
    dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size, timeout=timeout)


class _LoopbackTorchBackend(_TorchBackend):
    def on_start(self, worker_group, backend_config) -> None:  # a TorchConfig
        import ray
        from ray.train._internal.worker_group import WorkerGroup as V1WorkerGroup
        from ray.train.torch.config import _set_torch_distributed_env_vars

        backend = backend_config.backend or "gloo"
        worker_group.execute(_pin_transports_to_loopback)
        port = worker_group.execute_single(0, _bind_store_socket)
        if not isinstance(worker_group, V1WorkerGroup):
            worker_group.execute(_set_torch_distributed_env_vars)
        n = len(worker_group)
        ray.get(
            [
                worker_group.execute_single_async(i, _join, backend, i, n, port, backend_config.timeout_s)
                for i in range(n)
            ]
        )


@dataclasses.dataclass
class LoopbackTorchConfig(TorchConfig):
    """`TorchConfig` whose process group listens on 127.0.0.1 only (one machine)."""

    @property
    def backend_cls(self):
        return _LoopbackTorchBackend
