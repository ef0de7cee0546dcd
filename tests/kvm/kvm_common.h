/* SPDX-License-Identifier: MIT */
/* Helpers of the kvm_* suites: KVM availability, child processes speaking JSON lines. */
#ifndef FERRY_TESTS_KVM_COMMON_H
#define FERRY_TESTS_KVM_COMMON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define KVM_GUEST_BIN FERRY_BINARY_DIR "/ferry-kvm-guest"

/* Skip the test, with the reason, unless KVM runs the guest on this machine. */
void kvmt_require_kvm(void);

/* A child process whose stdout is read as JSON lines. */
struct kvmt_child {
	pid_t pid;
	int fd; /* read end of its stdout */
	char *buf;
	size_t len, cap;
	int status; /* exit status once reaped, -1 when killed by a signal */
};

/* Start @argv (argv[0] is a path) with stdout into a pipe; stderr is inherited. */
void kvmt_spawn(const char *const argv[], struct kvmt_child *c);

/*
 * The next JSON line whose "event" is @event (NULL: any), within @timeout_ms;
 * other lines are passed over. NULL at end of output or on timeout.
 */
json_t *kvmt_next(struct kvmt_child *c, const char *event, int timeout_ms);

/* Wait for the child to exit (killing it after @timeout_ms); returns its status. */
int kvmt_reap(struct kvmt_child *c, int timeout_ms);

/* Where a child is stuck: each thread's kernel stack (root only) or wchan, for messages. */
void kvmt_where(const struct kvmt_child *c, char *buf, size_t len);

/* Kill and reap, for cleanups. */
void kvmt_kill(struct kvmt_child *c);

/* A fresh socket path under /tmp for this test. */
void kvmt_sock_path(char *buf, size_t len, const char *tag);

/* Integer member @key of @o (json integers only; 0 when absent). */
long long kvmt_int(json_t *o, const char *key);

#endif
