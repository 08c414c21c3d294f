#!/usr/bin/python3
"""Writes tiny.onnx, the server tests' model: y = x * 2 + 1 with x float32 [batch, 4].

Uses only Debian's python3-protobuf and protoc (no python3-onnx): the ONNX schema is compiled from
Kestrel's own copy of onnx.proto into a temporary folder. Run from anywhere:
    /usr/bin/python3 tests/server/data/make_tiny_model.py
"""
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
src = os.path.normpath(os.path.join(here, "..", "..", "..", "src"))
with tempfile.TemporaryDirectory() as tmp:
    subprocess.check_call(["protoc", f"-I{src}", f"--python_out={tmp}",
                           os.path.join(src, "kestrel/onnx/onnx.proto")])
    sys.path.insert(0, tmp)
    from kestrel.onnx import onnx_pb2 as onnx  # noqa: E402

    m = onnx.ModelProto()
    m.ir_version = 8
    m.producer_name = "kestrel-tests"
    m.opset_import.add(domain="", version=13)
    g = m.graph
    g.name = "tiny"

    def value_info(name):
        vi = g.input.add() if name == "x" else g.output.add()
        vi.name = name
        t = vi.type.tensor_type
        t.elem_type = 1  # FLOAT
        t.shape.dim.add(dim_param="batch")
        t.shape.dim.add(dim_value=4)

    value_info("x")
    value_info("y")
    for name, v in (("two", 2.0), ("one", 1.0)):
        init = g.initializer.add(name=name, data_type=1)
        init.float_data.append(v)
    g.node.add(op_type="Mul", input=["x", "two"], output=["x2"], name="mul")
    g.node.add(op_type="Add", input=["x2", "one"], output=["y"], name="add")
    with open(os.path.join(here, "tiny.onnx"), "wb") as f:
        f.write(m.SerializeToString())
print("wrote", os.path.join(here, "tiny.onnx"))
