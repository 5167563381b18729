import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import {
  AbortedError,
  AlreadyExistsError,
  DeadlineExceededError,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  OutOfRangeError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
  UnimplementedError,
  errorForStatus,
  toGrpcStatus,
} from "./errors.js";
import { CommandNotFoundError, ExecError, ExecTimeoutError } from "./exec.js";

describe("toGrpcStatus", () => {
  it.each([
    [new InvalidArgumentError("x"), status.INVALID_ARGUMENT],
    [new NotFoundError("x"), status.NOT_FOUND],
    [new AlreadyExistsError("x"), status.ALREADY_EXISTS],
    [new FailedPreconditionError("x"), status.FAILED_PRECONDITION],
    [new AbortedError("x"), status.ABORTED],
    [new UnavailableError("x"), status.UNAVAILABLE],
    [new DeadlineExceededError("x"), status.DEADLINE_EXCEEDED],
    [new OutOfRangeError("x"), status.OUT_OF_RANGE],
    [new ResourceExhaustedError("x"), status.RESOURCE_EXHAUSTED],
    [new PermissionDeniedError("x"), status.PERMISSION_DENIED],
    [new UnauthenticatedError("x"), status.UNAUTHENTICATED],
    [new UnimplementedError("x"), status.UNIMPLEMENTED],
    [new InternalError("x"), status.INTERNAL],
  ])("maps %o to its status", (err, code) => {
    expect(toGrpcStatus(err)).toEqual({ code, details: "x" });
  });

  it("turns command failures into Internal with what the command said, and timeouts into DeadlineExceeded", () => {
    expect(toGrpcStatus(new ExecError("mkfs.ext4 -q /dev/x", 1, "no space\n"))).toEqual({
      code: status.INTERNAL,
      details: "mkfs.ext4 -q /dev/x exited with status 1: no space",
    });
    expect(toGrpcStatus(new CommandNotFoundError("fsck", undefined, "fsck is not installed")).code).toBe(status.INTERNAL);
    expect(toGrpcStatus(new ExecTimeoutError("sleep 9", "timed out after 10 ms")).code).toBe(status.DEADLINE_EXCEEDED);
  });

  it("keeps the status of an error from a gRPC call we made", () => {
    expect(toGrpcStatus({ code: status.PERMISSION_DENIED, details: "not on the list" })).toEqual({
      code: status.PERMISSION_DENIED,
      details: "not on the list",
    });
  });

  it("never answers Unknown: anything else is Internal", () => {
    expect(toGrpcStatus(new TypeError("undefined is not a function"))).toEqual({ code: status.INTERNAL, details: "undefined is not a function" });
    expect(toGrpcStatus("a string")).toEqual({ code: status.INTERNAL, details: "a string" });
    expect(toGrpcStatus({ code: 99, details: "not a status" }).code).toBe(status.INTERNAL);
  });
});

describe("errorForStatus", () => {
  it("keeps every status a CSI caller may see", () => {
    for (const code of [
      status.INVALID_ARGUMENT,
      status.NOT_FOUND,
      status.ALREADY_EXISTS,
      status.FAILED_PRECONDITION,
      status.ABORTED,
      status.UNAVAILABLE,
      status.DEADLINE_EXCEEDED,
      status.OUT_OF_RANGE,
      status.RESOURCE_EXHAUSTED,
      status.PERMISSION_DENIED,
      status.UNAUTHENTICATED,
      status.UNIMPLEMENTED,
      status.INTERNAL,
    ]) {
      expect(toGrpcStatus(errorForStatus(code, "inner said so"))).toEqual({ code, details: "inner said so" });
    }
  });

  it("turns Unknown (a Go driver's plain error) into Internal and Cancelled into Aborted", () => {
    expect(errorForStatus(status.UNKNOWN, "x")).toBeInstanceOf(InternalError);
    expect(errorForStatus(status.CANCELLED, "x")).toBeInstanceOf(AbortedError);
    expect(errorForStatus(status.DATA_LOSS, "x")).toBeInstanceOf(InternalError);
  });

  it("never passes Unknown through from a relayed service error", () => {
    expect(toGrpcStatus({ code: status.UNKNOWN, details: "boom" })).toEqual({ code: status.INTERNAL, details: "boom" });
  });
});
