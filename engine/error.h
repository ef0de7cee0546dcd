/* SPDX-License-Identifier: MIT */
/*
 * ferry's one error idiom.
 *
 * Every function of libferry returns 0 (or a count) on success and a negative
 * number on failure: either a negated errno value (-ENOMEM, -EINVAL, ...) or
 * one of ferry's own codes below, all of which lie under FERRY_ERR_BASE so
 * they can never collide with an errno. errno itself is never part of the API.
 *
 * This header is a leaf: it includes nothing of ferry, so every module
 * (vmstate, channels, rdma, engine) may use it.
 */
#ifndef FERRY_ERROR_H
#define FERRY_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * X(code, NAME, message): the single list behind the enum and ferry_strerror().
 * Codes are part of the ABI: never renumber, only append.
 */
#define FERRY_ERRORS(X)                                                                            \
	X(-4097, BADSTREAM, "malformed migration stream")                                          \
	X(-4098, TRUNCATED, "migration stream ended early")                                        \
	X(-4099, BADMAGIC, "not a migration stream (bad magic)")                                   \
	X(-4100, VERSION, "version not supported")                                                 \
	X(-4101, NOSECTION, "unknown section or device")                                           \
	X(-4102, NOSUBSECTION, "unknown subsection")                                               \
	X(-4103, FOOTER, "missing or mismatched section footer")                                   \
	X(-4104, MISMATCH, "value differs from the destination's")                                 \
	X(-4105, LIMIT, "value exceeds a limit")                                                   \
	X(-4106, PEERABORT, "peer aborted the migration")                                          \
	X(-4107, CANCELED, "migration cancelled")                                                  \
	X(-4108, TIMEDOUT, "migration timed out")                                                  \
	X(-4109, NORDMA, "no usable RDMA device")                                                  \
	X(-4110, BADURI, "malformed migration URI")                                                \
	X(-4111, STATE, "operation not valid in the current state")                                \
	X(-4112, HOOK, "a device hook failed")                                                     \
	X(-4113, AUTH, "peer failed authentication")                                               \
	X(-4114, TLS, "TLS handshake or record failure")

/* All ferry codes lie at or below this value; anything above is -errno. */
#define FERRY_ERR_BASE (-4096)

enum ferry_error {
#define FERRY_ERR_ENUM_(code, name, msg) FERRY_E##name = (code),
	FERRY_ERRORS(FERRY_ERR_ENUM_)
#undef FERRY_ERR_ENUM_
};

/**
 * ferry_strerror() - describe an error code.
 * @err: a negative value returned by libferry (ferry code or -errno).
 *
 * Thread-safe. Returns a static string, never NULL ("unknown error" for a
 * value that is neither).
 */
const char *ferry_strerror(int err);

/**
 * ferry_err_name() - the symbolic name of an error code ("EBADSTREAM", "ENOMEM").
 * @err: a negative value returned by libferry.
 *
 * Thread-safe. Returns a static string, never NULL.
 */
const char *ferry_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif
