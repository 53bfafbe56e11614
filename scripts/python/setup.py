"""Generates the gRPC stubs from ../../proto at build time, so they never drift from the
server's API and are never committed."""

import pathlib
import re

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
PROTO_DIR = HERE.parent.parent / "proto"
OUT = HERE / "dcd_client" / "_pb"


def generate():
    from grpc_tools import protoc  # build requirement

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "__init__.py").write_text('"""Generated from proto/dcd/v1/dcd.proto at build time."""\n')
    proto = PROTO_DIR / "dcd" / "v1" / "dcd.proto"
    if not proto.exists():
        raise SystemExit(f"{proto} not found: build dcd-client from the dcd repository")
    args = ["protoc", f"-I{proto.parent}", f"--python_out={OUT}", f"--pyi_out={OUT}",
            f"--grpc_python_out={OUT}", str(proto)]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on " + str(proto))
    # The generated service module imports its messages as a top-level module; make the
    # import relative so the stubs live inside this package.
    grpc_file = OUT / "dcd_pb2_grpc.py"
    text = grpc_file.read_text()
    grpc_file.write_text(re.sub(r"^import dcd_pb2 as", "from . import dcd_pb2 as", text, flags=re.M))


class BuildWithStubs(build_py):
    def run(self):
        generate()
        super().run()


# Also now: setuptools checks that the package folders exist before it builds anything.
generate()
setup(cmdclass={"build_py": BuildWithStubs})
