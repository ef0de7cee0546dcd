/* SPDX-License-Identifier: MIT */
/*
 * exec:COMMAND: the stream piped through "/bin/sh -c COMMAND" (compressors,
 * ssh, cat > file). Outgoing, the command reads the stream on its stdin;
 * incoming, it writes the stream on its stdout.
 *
 * The command is connected by a socketpair, not a pipe: the socket ops then
 * apply unchanged (sendmsg with MSG_NOSIGNAL, so a command that died is an
 * -EPIPE and never a SIGPIPE; shutdown(2) for cancel), and commands read or
 * write a socket like a pipe.
 *
 * It runs in a process group of its own, so a cancel can stop the whole
 * pipeline the shell started and not just the shell.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ferry/error.h>

#include "internal.h"

extern char **environ;

/*
 * Reap @pid within @timeout_ms. Returns 1 with *@status set, 0 on timeout,
 * or -errno (-ECHILD when someone else reaped it, e.g. SIGCHLD set to SIG_IGN).
 */
static int exec_wait(pid_t pid, int timeout_ms, int *status)
{
	int64_t deadline = chan_deadline(timeout_ms);
	long nap_us = 1000;

	for (;;) {
		pid_t r = waitpid(pid, status, WNOHANG);
		struct timespec ts;
		int left;

		if (r == pid)
			return 1;
		if (r < 0 && errno != EINTR)
			return -errno;
		left = chan_remaining(deadline);
		if (left == 0)
			return 0;
		/* Short naps first (most commands are gone at once), then 50 ms. */
		if (left > 0 && (long)left * 1000 < nap_us)
			nap_us = (long)left * 1000;
		ts.tv_sec = 0;
		ts.tv_nsec = nap_us * 1000;
		nanosleep(&ts, NULL);
		if (nap_us < 50000)
			nap_us *= 2;
	}
}

/* SIGKILL the group and reap; a killed process exits at once. */
static void exec_kill(pid_t pid, int *status)
{
	kill(-pid, SIGKILL);
	while (waitpid(pid, status, 0) < 0 && errno == EINTR)
		;
}

static int exec_close(struct ferry_channel *ch, bool graceful)
{
	pid_t pid = ch->child;
	int status = 0, r;

	/* Our end goes first: the command sees end of input (or a broken pipe
	 * on output) and can finish. */
	if (ch->fd >= 0) {
		close(ch->fd);
		ch->fd = -1;
	}
	if (pid <= 0)
		return 0;
	ch->child = -1;
	if (!graceful) {
		exec_kill(pid, &status);
		return 0;
	}
	if (atomic_load(&ch->shut)) {
		/* Cancelled: stop the command now, politely first. */
		kill(-pid, SIGTERM);
		if (exec_wait(pid, CHAN_KILL_GRACE_MS, &status) == 0)
			exec_kill(pid, &status);
		return 0;
	}
	r = exec_wait(pid, CHAN_REAP_TIMEOUT_MS, &status);
	if (r == 0) {
		chan_err("%s: still running %d s after the stream ended; killed", ch->peer,
			 CHAN_REAP_TIMEOUT_MS / 1000);
		exec_kill(pid, &status);
		return -ETIMEDOUT;
	}
	if (r < 0) {
		/* Reaped elsewhere: its status is lost, so it cannot be checked. */
		chan_warn("%s: exit status unknown (%s); is SIGCHLD ignored?", ch->peer,
			  ferry_strerror(r));
		return 0;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status))
		chan_err("%s: command exited with status %d", ch->peer, WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		chan_err("%s: command killed by signal %d (%s)", ch->peer, WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	return -EIO;
}

static const struct chan_ops chan_exec_ops = {
    .name = "exec",
    .writev = chan_sock_writev,
    .read = chan_sock_read,
    .shutdown = chan_sock_shutdown,
    .shutdown_write = chan_sock_shutdown_write,
    .close = exec_close,
};

int chan_exec_open(const struct ferry_uri *uri, bool for_write, struct ferry_channel **out)
{
	char *argv[] = {(char *)"sh", (char *)"-c", (char *)uri->path, NULL};
	struct ferry_channel *ch = NULL;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;
	int sv[2], ret;
	pid_t pid;

	if (uri->path[0] == '\0' || strnlen(uri->path, FERRY_URI_PATH_MAX) >= FERRY_URI_PATH_MAX) {
		chan_err("exec: missing or overlong command");
		return FERRY_EBADURI;
	}
	ret = chan_alloc(FERRY_URI_EXEC, &chan_exec_ops, &ch);
	if (ret < 0)
		return ret;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		ret = -errno;
		goto err_destroy;
	}
	ch->fd = sv[0];
	ret = -posix_spawn_file_actions_init(&fa);
	if (ret < 0)
		goto err_close_child_end;
	ret = -posix_spawnattr_init(&attr);
	if (ret < 0)
		goto err_fa_destroy;

	/* The child's end becomes stdin (outgoing) or stdout (incoming); the
	 * other standard stream is /dev/null so the command can neither read
	 * the embedder's terminal nor write into its stdout. stderr is shared:
	 * that is where a failing command says why. */
	ret = -posix_spawn_file_actions_adddup2(&fa, sv[1], for_write ? 0 : 1);
	if (ret == 0)
		ret = -posix_spawn_file_actions_addopen(&fa, for_write ? 1 : 0, "/dev/null",
							for_write ? O_WRONLY : O_RDONLY, 0);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
	/* Descriptors the embedder left inheritable would keep our peers'
	 * sockets open in the command and delay their end of stream. */
	if (ret == 0)
		ret = -posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
	/* The embedder's signal mask and ignored signals (SIGPIPE, often) must
	 * not leak into the command: a command that ignores SIGPIPE could spin. */
	sigemptyset(&none);
	sigfillset(&all);
	sigdelset(&all, SIGKILL);
	sigdelset(&all, SIGSTOP);
	if (ret == 0)
		ret = -posix_spawnattr_setsigmask(&attr, &none);
	if (ret == 0)
		ret = -posix_spawnattr_setsigdefault(&attr, &all);
	if (ret == 0)
		ret = -posix_spawnattr_setpgroup(&attr, 0);
	if (ret == 0)
		ret = -posix_spawnattr_setflags(
		    &attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
	if (ret == 0)
		ret = -posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	close(sv[1]);
	if (ret < 0) {
		chan_err("exec: cannot run /bin/sh -c '%.80s': %s", uri->path, ferry_strerror(ret));
		goto err_destroy;
	}
	ch->child = pid;
	ch->can_write = for_write;
	ch->can_read = !for_write;
	chan_set_peer(ch, "exec:%.100s%s (pid %d)", uri->path, strlen(uri->path) > 100 ? "..." : "",
		      (int)pid);
	chan_dbg("%s: started for %s", ch->peer, for_write ? "writing" : "reading");
	*out = ch;
	return 0;

err_fa_destroy:
	posix_spawn_file_actions_destroy(&fa);
err_close_child_end:
	close(sv[1]);
err_destroy:
	ferry_channel_destroy(ch);
	return ret;
}
