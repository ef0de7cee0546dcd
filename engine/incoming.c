/* SPDX-License-Identifier: MIT */
/*
 * The destination, run in the engine's migration thread: accept, load the
 * whole stream into the registered RAM and devices (the loader checks every
 * field of it), and tell the source the verdict on the return path. Only a
 * stream loaded to its end with every check passed is COMPLETED.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

static void send_shut(struct ferry_engine *eng, uint32_t value)
{
	struct ferry_writer *w = eng->conn.w;

	if (!w || !eng->conn.has_return_path)
		return;
	ferry_put_be16(w, RP_MSG_SHUT);
	ferry_put_be16(w, 4);
	ferry_put_be32(w, value);
	ferry_writer_flush(w);
}

/* COMMAND records from the source; loader's (migration) thread. */
static int on_command(void *opaque, uint16_t cmd, const uint8_t *data, uint16_t len)
{
	struct ferry_engine *eng = opaque;

	switch (cmd) {
	case FERRY_CMD_OPEN_RETURN_PATH:
		return 0;
	case FERRY_CMD_PING:
		if (eng->conn.w && eng->conn.has_return_path) {
			ferry_put_be16(eng->conn.w, RP_MSG_PONG);
			ferry_put_be16(eng->conn.w, 4);
			ferry_put_buffer(eng->conn.w, data, len);
			return ferry_writer_flush(eng->conn.w);
		}
		return 0;
	case FERRY_CMD_SWITCHOVER_START:
		return 0;
	default:
		return -ENOTSUP;
	}
}

void *eng_dest_thread(void *arg)
{
	struct ferry_engine *eng = arg;
	struct ferry_load_config lc = {
	    .machine = eng->params.machine,
	    .command = on_command,
	    .opaque = eng,
	};
	enum ferry_status final;
	int ret;

	if (eng->params.timeout_ms)
		eng->deadline_ns = eng->t_start_ns + eng->params.timeout_ms * 1000000ull;
	ret = eng_watchdog_start(eng);
	/* The first event: the migration exists and is in setup. */
	eng_emit(eng, FERRY_EVENT_STATUS);
	if (!ret)
		ret = eng_conn_accept(eng);
	if (!ret) {
		lc.vmdesc_mode = eng->conn.ends ? FERRY_VMDESC_OPTIONAL : FERRY_VMDESC_REQUIRED;
		ret = ferry_load(eng->conn.r, eng->devs, &lc);
		pthread_mutex_lock(&eng->conn_lock);
		{
			uint64_t lanes = eng_dp_wire_bytes(eng);

			pthread_mutex_lock(&eng->lock);
			eng->stats.transferred = ferry_reader_offset(eng->conn.r) + lanes;
			eng->stats.memcpy_bytes = eng->ram.copied;
			pthread_mutex_unlock(&eng->lock);
		}
		pthread_mutex_unlock(&eng->conn_lock);
		/*
		 * Everything landed: answer first, so the source's downtime does not
		 * include tearing the lanes down (they go below). Or it never will:
		 * the lanes and their workers go now, before the answer.
		 */
		if (ret == 0)
			eng_dp_quiesce(eng);
		else
			eng_dp_stop(eng, false);
		if (ret < 0)
			eng_fail(eng, ret, "loading the stream failed: %s",
				 ferry_reader_errmsg(eng->conn.r)[0]
				     ? ferry_reader_errmsg(eng->conn.r)
				     : ferry_strerror(ret));
	}
	if (ret == 0) {
		send_shut(eng, 0);
		if (eng->conn.w && ferry_writer_error(eng->conn.w))
			eng_log(FERRY_LOG_WARN,
				"could not confirm to the source; it will resume its guest");
		final = FERRY_STATUS_COMPLETED;
	} else {
		bool timed_out;

		send_shut(eng, 1);
		pthread_mutex_lock(&eng->lock);
		timed_out = eng->stats.error == FERRY_ETIMEDOUT;
		pthread_mutex_unlock(&eng->lock);
		/* The watchdog's timers cancel too; only the embedder's cancel is CANCELLED. */
		final = atomic_load(&eng->user_cancel) && !timed_out ? FERRY_STATUS_CANCELLED
								     : FERRY_STATUS_FAILED;
	}
	eng_dp_stop(eng, false);
	eng_ram_release(eng);
	eng_finish(eng, final);
	return NULL;
}
