"""Where ONNX Runtime really ran each node, read from its own profiler rather than guessed.

Asking for ``tensorrt,cuda,cpu`` says nothing about where the nodes land: ONNX Runtime assigns every
node to the first provider that has a kernel for it, and quietly gives the rest to the next one,
inserting Memcpy nodes between devices. A session profile (one run) names the provider of every
node that executed; this module turns it into counts per provider and per op, the share of the
compute-heavy nodes that stayed on the first choice, and the Memcpy count.

Nodes that a compiling provider (TensorRT, OpenVINO, DirectML...) fused into one kernel appear as a
single node of that provider; the heavy ops inside it are not visible, so the heavy share is
``1 - (heavy nodes seen off the first choice) / (heavy ops in the ONNX graph)``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.runtime.providers import ProviderError

__all__ = [
    "NodePlacement",
    "PlacementReport",
    "HEAVY_OPS",
    "COMPILING",
    "from_profile",
    "read_profile",
    "heavy_ops_in_graph",
]

HEAVY_OPS = frozenset(
    {
        "MatMul", "Conv", "Gemm", "Attention", "ConvTranspose", "FusedMatMul", "FusedConv", "FusedGemm",
        "MatMulNBits", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QLinearMatMul",
        "QLinearConv", "ConvInteger", "QGemm", "QAttention", "MultiHeadAttention", "GroupQueryAttention",
        "PackedAttention", "PackedMultiHeadAttention", "NhwcConv", "NhwcFusedConv", "FusedMatMulActivation",
    }
)  # fmt: skip
# providers that compile subgraphs into one kernel each
COMPILING = frozenset(
    {
        "TensorrtExecutionProvider", "NvTensorRTRTXExecutionProvider", "OpenVINOExecutionProvider",
        "DmlExecutionProvider", "MIGraphXExecutionProvider", "CoreMLExecutionProvider", "QNNExecutionProvider",
        "NnapiExecutionProvider", "VitisAIExecutionProvider", "WebNNExecutionProvider",
    }
)  # fmt: skip
_KERNEL = "_kernel_time"


@dataclass(frozen=True)
class NodePlacement:
    name: str
    op: str
    provider: str
    duration_us: int = 0

    @property
    def is_memcpy(self) -> bool:
        return self.op.startswith("Memcpy")


@dataclass
class PlacementReport:
    requested: list[str]  # providers handed to the session, first choice first
    session_providers: list[str]  # what the session reports it has
    nodes: list[NodePlacement] = field(default_factory=list)
    heavy_in_graph: int = 0  # compute-heavy ops in the ONNX file, before ONNX Runtime's fusions

    @property
    def first_choice(self) -> str:
        return self.requested[0]

    @property
    def compute_nodes(self) -> list[NodePlacement]:
        return [n for n in self.nodes if not n.is_memcpy]

    @property
    def by_provider(self) -> dict[str, int]:
        return dict(Counter(n.provider for n in self.compute_nodes))

    @property
    def by_op(self) -> dict[str, dict[str, int]]:
        """op type → provider → node count."""
        out: dict[str, dict[str, int]] = {}
        for node in self.compute_nodes:
            per = out.setdefault(node.op, {})
            per[node.provider] = per.get(node.provider, 0) + 1
        return dict(sorted(out.items()))

    @property
    def memcpy(self) -> int:
        return sum(n.is_memcpy for n in self.nodes)

    @property
    def fallbacks(self) -> list[NodePlacement]:
        """Nodes that ran somewhere other than the first choice (Memcpy nodes excluded)."""
        return [n for n in self.compute_nodes if n.provider != self.first_choice]

    @property
    def compiled(self) -> dict[str, int]:
        """Fused subgraph kernels per compiling provider (their contents are not visible)."""
        return dict(Counter(n.provider for n in self.compute_nodes if n.provider in COMPILING))

    @property
    def heavy_share_on_first(self) -> float | None:
        heavy_off = sum(n.op in HEAVY_OPS for n in self.fallbacks)
        seen = sum(n.op in HEAVY_OPS for n in self.compute_nodes)
        total = max(self.heavy_in_graph, seen)
        return None if total == 0 else round(1.0 - heavy_off / total, 4)

    def fallback_summary(self) -> str:
        """``"3 MatMul, 1 Softmax on CPUExecutionProvider"``."""
        groups = Counter((n.provider, n.op) for n in self.fallbacks)
        parts = [f"{count} {op} on {provider}" for (provider, op), count in groups.most_common()]
        return ", ".join(parts[:8]) + (f", +{len(parts) - 8} more" if len(parts) > 8 else "")

    def raise_if_fallbacks(self) -> None:
        """The strict check: every node on the first choice, or one line naming what left it."""
        off = self.fallbacks
        if off:
            raise ProviderError(
                f"{len(off)} of {len(self.compute_nodes)} nodes left {self.first_choice}: {self.fallback_summary()}",
                f"{self.first_choice} has no kernel for these ops at these dtypes; accept the fallback (drop the "
                "strict placement check), put a provider that has them first, or change the ops in the model",
            )

    def summary(self) -> str:
        counts = ", ".join(f"{p} {c}" for p, c in self.by_provider.items())
        share = self.heavy_share_on_first
        heavy = "no compute-heavy ops" if share is None else f"{share:.0%} of compute-heavy ops on {self.first_choice}"
        return f"{len(self.compute_nodes)} nodes ({counts}); {heavy}; {self.memcpy} Memcpy"

    def to_json(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "session_providers": self.session_providers,
            "first_choice": self.first_choice,
            "nodes": len(self.compute_nodes),
            "by_provider": self.by_provider,
            "by_op": self.by_op,
            "compiled_subgraphs": self.compiled,
            "heavy_in_graph": self.heavy_in_graph,
            "heavy_share_on_first": self.heavy_share_on_first,
            "memcpy": self.memcpy,
            "fallbacks": [{"node": n.name, "op": n.op, "provider": n.provider} for n in self.fallbacks],
            "summary": self.summary(),
        }


def from_profile(events: list[dict[str, Any]]) -> list[NodePlacement]:
    """Nodes from an ONNX Runtime profile (``end_profiling()``'s JSON): one per node, durations summed
    over repeated executions (loops, subgraphs)."""
    nodes: dict[str, NodePlacement] = {}
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith(_KERNEL):
            continue
        args = event.get("args", {})
        node = name[: -len(_KERNEL)]
        seen = nodes.get(node)
        duration = int(event.get("dur", 0)) + (seen.duration_us if seen else 0)
        nodes[node] = NodePlacement(node, str(args.get("op_name", "?")), str(args.get("provider", "?")), duration)
    return list(nodes.values())


def read_profile(path: str | Path) -> list[dict[str, Any]]:
    data = json.loads(Path(path).read_text())
    return data if isinstance(data, list) else data.get("traceEvents", [])


def heavy_ops_in_graph(model_path: str | Path) -> int:
    """Compute-heavy ops in the file as exported (subgraphs included), without loading external weights."""
    from modelport import onnx_graph as graph  # onnx_ir (and sympy) only when a session opens, not on --help

    return sum(node.op_type in HEAVY_OPS for node in graph.nodes(graph.read(model_path)))
