"""The TestService of proto/wsgrpc/test/v1/test.proto, served by Python's
grpcio: a backend not written in Rust, for the tests of wsgrpc-bridge.

It behaves as the tonic test backend does (tests/src/backend.rs), and adds
status details to failures. The stubs are generated at start by grpcio-tools
from the repo's .proto files, so nothing generated is checked in.

    test_backend.py --port 0 [--no-reflection] [--with-example]

prints `READY grpc=http://127.0.0.1:PORT` once it serves. With
--with-example it serves example.ExampleService too: a backend that gained
a service, for a reload to pick up.
"""

import argparse
import asyncio
import importlib
import pathlib
import sys
import tempfile

import grpc
import grpc_tools
from grpc_tools import protoc

REPO = pathlib.Path(__file__).resolve().parents[2]
PROTOS = ["wsgrpc/test/v1/test.proto", "example.proto"]


def generate_stubs() -> None:
    out = tempfile.mkdtemp(prefix="wsgrpc-python-stubs-")
    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{REPO / 'proto'}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        *PROTOS,
    ]
    if protoc.main(args) != 0:
        sys.exit("grpc_tools.protoc failed")
    sys.path.insert(0, out)


generate_stubs()
test_pb2 = importlib.import_module("wsgrpc.test.v1.test_pb2")
test_pb2_grpc = importlib.import_module("wsgrpc.test.v1.test_pb2_grpc")
example_pb2 = importlib.import_module("example_pb2")
example_pb2_grpc = importlib.import_module("example_pb2_grpc")

from google.protobuf import any_pb2  # noqa: E402
from google.rpc import error_details_pb2, status_pb2  # noqa: E402
from grpc_reflection.v1alpha import reflection  # noqa: E402
from grpc_status import rpc_status  # noqa: E402

TRANSPORT_KEYS = {"te", "content-type", "user-agent"}


def echoed(context) -> dict:
    return {
        key: value
        for key, value in context.invocation_metadata()
        if not key.startswith("grpc-") and key not in TRANSPORT_KEYS and not key.endswith("-bin")
    }


def response(request, index: int, metadata: dict):
    if request.mark_end:
        return test_pb2.TestResponse(end=True)
    return test_pb2.TestResponse(
        text=request.text,
        index=index,
        metadata=metadata if request.echo_metadata else {},
    )


async def echo_headers(context, request, metadata: dict) -> None:
    if request.echo_metadata:
        await context.send_initial_metadata([(f"echo-{key}", value) for key, value in metadata.items()])


async def fail(context, request) -> None:
    """Ends the call with the request's status, details and a trailer."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason="TEST_FAILURE", domain="wsgrpc.test"))
    status = status_pb2.Status(code=request.fail_code, message=request.fail_message, details=[detail])
    converted = rpc_status.to_status(status)
    trailers = tuple(converted.trailing_metadata) + (("x-failed-by", "python-backend"),)
    await context.abort(converted.code, converted.details, trailers)


async def pause(request) -> None:
    if request.delay_ms > 0:
        await asyncio.sleep(request.delay_ms / 1000)


class Counters:
    def __init__(self) -> None:
        self.cancelled = 0
        self.active = 0

    def track(self):
        return Tracked(self)


class Tracked:
    """Counts a call as active while it runs, and as cancelled if it ends
    without finishing (the client cancelled, or its deadline passed)."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self.finished = False

    def __enter__(self):
        self.counters.active += 1
        return self

    def finish(self) -> None:
        self.finished = True

    def __exit__(self, kind, value, traceback) -> None:
        self.counters.active -= 1
        if not self.finished and kind is asyncio.CancelledError:
            self.counters.cancelled += 1


class TestService(test_pb2_grpc.TestServiceServicer):
    def __init__(self) -> None:
        self.counters = Counters()

    async def Unary(self, request, context):
        with self.counters.track() as call:
            metadata = echoed(context)
            await pause(request)
            call.finish()
            if request.fail_code:
                await fail(context, request)
            await echo_headers(context, request, metadata)
            return response(request, 0, metadata)

    async def ServerStream(self, request, context):
        with self.counters.track() as call:
            metadata = echoed(context)
            await echo_headers(context, request, metadata)
            for index in range(request.count):
                await pause(request)
                yield response(request, index, metadata)
            call.finish()
            if request.fail_code:
                await fail(context, request)

    async def ClientStream(self, request_iterator, context):
        with self.counters.track() as call:
            metadata = echoed(context)
            texts, total, count, last = [], 0, 0, test_pb2.TestRequest()
            async for request in request_iterator:
                await pause(request)
                texts.append(request.text)
                total += request.big
                count += 1
                last = request
            call.finish()
            if last.fail_code:
                await fail(context, last)
            await echo_headers(context, last, metadata)
            return test_pb2.TestResponse(
                text=" ".join(texts),
                index=count,
                sum=total,
                metadata=metadata if last.echo_metadata else {},
            )

    async def Bidi(self, request_iterator, context):
        with self.counters.track() as call:
            metadata = echoed(context)
            async for request in request_iterator:
                await pause(request)
                for index in range(max(request.count, 1)):
                    yield response(request, index, metadata)
                if request.fail_code:
                    call.finish()
                    await fail(context, request)
            call.finish()

    async def Hang(self, request, context):
        with self.counters.track():
            await asyncio.Event().wait()

    async def Stats(self, request, context):
        return test_pb2.StatsResponse(cancelled=self.counters.cancelled, active=self.counters.active)


class ExampleService(example_pb2_grpc.ExampleServiceServicer):
    async def SayHello(self, request, context):
        return example_pb2.HelloResponse(message=f"Hello, {request.name}!")


async def serve(port: int, with_reflection: bool, with_example: bool) -> None:
    server = grpc.aio.server()
    test_pb2_grpc.add_TestServiceServicer_to_server(TestService(), server)
    names = [test_pb2.DESCRIPTOR.services_by_name["TestService"].full_name]
    if with_example:
        example_pb2_grpc.add_ExampleServiceServicer_to_server(ExampleService(), server)
        names.append(example_pb2.DESCRIPTOR.services_by_name["ExampleService"].full_name)
    if with_reflection:
        reflection.enable_server_reflection([*names, reflection.SERVICE_NAME], server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(f"READY grpc=http://127.0.0.1:{bound}", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-reflection", action="store_true")
    parser.add_argument("--with-example", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args.port, not args.no_reflection, args.with_example))


if __name__ == "__main__":
    main()
