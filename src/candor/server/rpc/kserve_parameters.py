"""Which Open Inference Protocol parameters ModelInfer takes, as Triton's gRPC endpoint does.

Clients add parameters that change nothing on gRPC: KServe's SDK sends ``binary_data_size`` with
every raw input, HTTP-minded clients ``binary_data`` / ``binary_data_output``, MLServer's
``content_type``. Those are accepted and ignored (``content_type`` only when it names what was
sent: ``np``, or the tensor's own datatype). Parameters that would change the answer are refused
by name, with what to do instead; anything else is refused naming the accepted list.

* request: ``binary_data_output`` and ``content_type: np`` are ignored;
* input: ``binary_data_size`` and ``content_type`` (``np`` or ``FP32``) are ignored;
* output: ``binary_data``, ``binary_data_output`` and ``content_type`` (``np`` or its type) are ignored;
* anywhere: ``classification`` and the ``shared_memory_*`` parameters are refused with what to do
  instead, and any other name with the list above (the README's KServe section has the table).
"""

from __future__ import annotations

from collections.abc import Mapping

from candor.server.core.errors import InvalidArgument, shown

IGNORED = {
    "request": frozenset({"binary_data_output"}),
    "input": frozenset({"binary_data_size"}),
    "output": frozenset({"binary_data", "binary_data_output"}),
}
CONTENT_TYPE = "content_type"
SHARED_MEMORY = "shared memory is not supported: send the tensor's data in the request (raw_input_contents or contents)"
CHANGES_THE_ANSWER = {
    "classification": "for the top classes, request 'probabilities' and sort them, or call candor.v1 Predict with top_k",
    "shared_memory_region": SHARED_MEMORY,
    "shared_memory_offset": SHARED_MEMORY,
    "shared_memory_byte_size": SHARED_MEMORY,
}


def accepted(kind: str) -> str:
    return ", ".join([*sorted(IGNORED[kind]), CONTENT_TYPE])


def check_parameters(where: str, kind: str, parameters: Mapping, datatype: str = "") -> None:
    """INVALID_ARGUMENT for a parameter ``where`` ("input", "output 'logits'", "request") cannot take;
    ``kind`` is request, input or output; ``datatype`` the tensor's own ("" for the request)."""
    for name in sorted(parameters):
        if name in IGNORED[kind]:
            continue
        if name == CONTENT_TYPE:
            value = parameters[name]
            wanted = {"np", datatype.lower()} - {""}
            if value.WhichOneof("parameter_choice") != "string_param" or value.string_param.lower() not in wanted:
                got = getattr(value, value.WhichOneof("parameter_choice") or "string_param")
                raise InvalidArgument(f"{where} parameter content_type must name what was sent ("
                                      f"{' or '.join(repr(w) for w in sorted(wanted))}), got {shown(str(got))}")  # fmt: skip
            continue
        if name in CHANGES_THE_ANSWER:
            raise InvalidArgument(f"{where} parameter {shown(name)} is not supported: {CHANGES_THE_ANSWER[name]}")
        raise InvalidArgument(f"{where} parameter {shown(name)} is not supported; {kind} parameters accepted (and "
                              f"ignored): {accepted(kind)}")  # fmt: skip
