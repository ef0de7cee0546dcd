#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
#
# tools/bootstrap.sh: from a fresh Debian 12 machine to a built, checked ferry.
#
#   bash tools/bootstrap.sh demo   install what is missing, build, run the demo
#                                  (`ferry demo`; until it exists, write a sample
#                                  stream and `ferry inspect` it)
#   bash tools/bootstrap.sh test   install what is missing, then every check CI
#                                  runs (.ci/run calls exactly this):
#       packages  missing apt packages (apt-get update only when one is missing)
#       build     fresh build/ (RelWithDebInfo, -DFERRY_WERROR=ON)
#       format    clang-format --dry-run -Werror over the project's .c/.h
#       asan      fresh build-asan/ (-DFERRY_SANITIZE=address,undefined), all of ferry-tests
#       valgrind  memcheck on a subset of ferry-tests (FERRY_VALGRIND_FILTER)
#       tsan      fresh build-tsan/ (-DFERRY_SANITIZE=thread, no tests: Criterion
#                 cannot start under TSan), migrations between two TSan-built
#                 ferry processes (tests/tsan/run.sh)
#       clang     fresh build-fuzz/ with clang and -DFERRY_FUZZ=ON (warnings counted)
#       fuzz      each libFuzzer target for FERRY_FUZZ_SECONDS, from tests/fuzz/corpus/
#       rig       tests/rig/smoke.sh (soft-RoCE in QEMU) when it exists, then the
#                 RDMA suites in a soft-RoCE guest (tests/rdma/run-in-rig.sh)
#       kvm       without a usable /dev/kvm on this host: the KVM suites in a
#                 nested-KVM rig guest (tests/kvm/nested-rig.sh); with one, they
#                 run in the final ferry-tests run and this job says so
#       tests     build/tests/ferry-tests, last, so its Synthesis line ends the log
#
# Every job logs to build/logs/<job>.log; the console gets one line per job, and
# a failing job's log tail. A timing table comes before the final run. The exit
# status is non-zero when any job failed (a skipped job is not a failure; its
# reason is printed).
#
# Knobs (environment):
#   FERRY_FUZZ_SECONDS=60      per fuzz target
#   FERRY_VALGRIND_FILTER=...  Criterion filter for the valgrind job (default
#                              '@(vmstate|channels)_*/!(every_*|*corrupt*)')
#   FERRY_BUDGET_MINUTES=60    the whole run; optional jobs are skipped when
#                              what is left would not fit (CI allows 90)
#   FERRY_SKIP="fuzz rig"      jobs not to run (for quick local runs)
#   FERRY_EXTRA_PACKAGES="..." more apt packages to ensure
#   FERRY_JOBS=<nproc>         parallel build jobs
#   FERRY_CLANG_WERROR=0       keep clang's warnings non-fatal in the clang job (fatal by default)
#
# The rig job's contract with tests/rig/smoke.sh: it is run as
# `FERRY_BUILD_DIR=$ROOT/build FERRY_LOG_DIR=$ROOT/build/logs/rig bash tests/rig/smoke.sh`
# and exits 0 (passed), 77 (skipped; prints "SKIP: <why>") or anything else
# (failed). Its packages: the rig list below plus tests/rig/packages.
#
# The job_* functions run through `bash -c` under timeout, which shellcheck
# cannot follow:
# shellcheck disable=SC2317
set -uo pipefail

MODE=${1:-}
case "$MODE" in
demo | test) ;;
*)
	echo "usage: bash tools/bootstrap.sh demo|test" >&2
	exit 2
	;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
export ROOT
export BUILD=$ROOT/build ASAN_BUILD=$ROOT/build-asan FUZZ_BUILD=$ROOT/build-fuzz
export TSAN_BUILD=$ROOT/build-tsan
export LOGS=$BUILD/logs
export FERRY_JOBS=${FERRY_JOBS:-$(nproc 2>/dev/null || echo 2)}
export FERRY_FUZZ_SECONDS=${FERRY_FUZZ_SECONDS:-60}
# The exhaustive loops (every truncation, every corrupted byte) and the
# multi-channel transfers take minutes under valgrind; ASan and the fuzzers
# run them at full speed.
export FERRY_VALGRIND_FILTER=${FERRY_VALGRIND_FILTER:-'@(vmstate_*|channels_uri|channels_tcp|channels_unix|channels_fd|channels_file|channels_exec)/!(every_*|*corrupt*)'}
FERRY_BUDGET_MINUTES=${FERRY_BUDGET_MINUTES:-60}
FERRY_SKIP=${FERRY_SKIP:-}
FINAL_RESERVE=600 # seconds kept for the final ferry-tests run
FINAL_TIMEOUT=1800
export DEBIAN_FRONTEND=noninteractive

# Debian 12 package names (each checked with apt-cache policy). libclang-rt-dev
# is only a Recommends of clang, and --no-install-recommends would leave clang
# without its sanitizer and libFuzzer runtimes.
PACKAGES=(build-essential cmake pkg-config git clang clang-format libclang-rt-dev
	libcriterion-dev libjansson-dev libibverbs-dev librdmacm-dev libnuma-dev libhwloc-dev
	numactl hwloc iperf3 valgrind qemu-system-x86 python3 libgnutls28-dev gnutls-bin gnuplot-nox)
# What the soft-RoCE rig needs (docs: RIGS.md), when the rig is in the tree;
# tests/rig/packages (one name per line, # comments) may add more.
if [[ $MODE == test && -f $ROOT/tests/rig/smoke.sh ]]; then
	PACKAGES+=(busybox-static cpio kmod iproute2 rdma-core ibverbs-providers ibverbs-utils
		rdmacm-utils perftest)
	if [[ -f $ROOT/tests/rig/packages ]]; then
		# shellcheck disable=SC2207 # one name per word
		PACKAGES+=($(sed 's/#.*//' "$ROOT/tests/rig/packages"))
	fi
fi
# shellcheck disable=SC2206 # a space-separated list
PACKAGES+=(${FERRY_EXTRA_PACKAGES:-})

START=$SECONDS
JOB_NAMES=()
JOB_RESULTS=()
JOB_TIMES=()
JOB_NOTES=()
FAILED=()

fmt_time() {
	local s=$1
	if ((s >= 60)); then
		printf '%dm%02ds' $((s / 60)) $((s % 60))
	else
		printf '%ds' "$s"
	fi
}

record() { # name result seconds note
	JOB_NAMES+=("$1")
	JOB_RESULTS+=("$2")
	JOB_TIMES+=("$3")
	JOB_NOTES+=("$4")
	[[ $2 == FAIL ]] && FAILED+=("$1")
	printf '[%-4s] %-9s %7s  %s\n' "$2" "$1" "$(fmt_time "$3")" "$4"
}

# A job's last "NOTE: " (or "SKIP: ") line is its note in the table.
job_note() { # log prefix
	grep -a "^$2: " "$1" 2>/dev/null | tail -n 1 | sed "s/^$2: //"
}

# "Tested: 12 | Passing: 12 | Failing: 0 | Crashing: 0" -> "12 tests, 0 failing, 0 crashing"
synthesis() { # log
	local s names
	s=$(grep -a 'Synthesis:' "$1" 2>/dev/null | tail -n 1 |
		sed -E 's/.*Tested: ([0-9]+) \| Passing: [0-9]+ \| Failing: ([0-9]+) \| Crashing: ([0-9]+).*/\1 tests, \2 failing, \3 crashing/')
	# Name what failed, so a job's note says which test without its log.
	names=$(grep -a -E '^\[FAIL\] |^\[----\] [^ ]+::[^ ]+: (CRASH|Timed out)' "$1" 2>/dev/null |
		sed -E 's/^\[[A-Z-]+\] ([^ ]+::[^: ]+):.*/\1/' | sort -u | head -n 8 | paste -sd ' ')
	echo "$s${names:+ ($names)}"
}

skipped_by_user() {
	[[ " $FERRY_SKIP " == *" $1 "* ]]
}

# run_job name timeout-seconds: run the function job_<name> with its output in
# $LOGS/<name>.log, under a timeout. The job returns 0 (ok), 77 (skipped, with
# a "SKIP: why" line) or anything else (failed).
run_job() {
	local name=$1 limit=$2 log=$LOGS/$1.log t0=$SECONDS rc note reserve=0
	# Checks leave room for the final run of the suite.
	[[ $name == packages || $name == build ]] || reserve=$FINAL_RESERVE
	local left=$((FERRY_BUDGET_MINUTES * 60 - (SECONDS - START) - reserve))

	if skipped_by_user "$name"; then
		record "$name" skip 0 "FERRY_SKIP"
		return 0
	fi
	if ((left < 120)); then
		record "$name" skip 0 "no time left in the budget ($FERRY_BUDGET_MINUTES min, of which $((FINAL_RESERVE / 60)) kept for the suite)"
		return 0
	fi
	((limit > left)) && limit=$left
	local fn=job_$name
	[[ $name == packages ]] && fn=job_packages_exported
	timeout -k 30 "$limit" bash -c "$fn" >"$log" 2>&1 </dev/null
	rc=$?
	case $rc in
	0)
		record "$name" ok $((SECONDS - t0)) "$(job_note "$log" NOTE)"
		;;
	77)
		record "$name" skip $((SECONDS - t0)) "$(job_note "$log" SKIP)"
		;;
	*)
		note="$(job_note "$log" NOTE)"
		((rc == 124)) && note="timed out after $(fmt_time "$limit")"
		record "$name" FAIL $((SECONDS - t0)) "${note:-exit status $rc}; log: ${log#"$ROOT"/}"
		echo "---- last 60 lines of ${log#"$ROOT"/} ----"
		tail -n 60 "$log"
		echo "---- end of ${log#"$ROOT"/} ----"
		;;
	esac
	return "$rc"
}

print_table() {
	local total=$((SECONDS - START))
	echo
	echo "== ferry $MODE: jobs =="
	printf '%-9s %-6s %7s  %s\n' job result time notes
	for i in "${!JOB_NAMES[@]}"; do
		printf '%-9s %-6s %7s  %s\n' "${JOB_NAMES[$i]}" "${JOB_RESULTS[$i]}" \
			"$(fmt_time "${JOB_TIMES[$i]}")" "${JOB_NOTES[$i]}"
	done
	printf '%-9s %-6s %7s\n' total "" "$(fmt_time "$total")"
	if ((${#FAILED[@]})) && [[ $MODE == test ]]; then
		echo "FAILED: ${FAILED[*]} (the run fails whatever the final tests say)"
		for j in "${FAILED[@]}"; do
			criterion_failures "$LOGS/$j.log" "$j"
		done
	fi
	echo
}

# The assertion messages and names of failed tests in a Criterion log, so the
# part of a CI log that is kept shows why, not only that, a check failed.
criterion_failures() { # log job
	local out
	out=$(awk '/^\[----\] .*: Assertion Failed/ { keep = 1; print; next }
	     keep && /^\[----\]   / { print; next }
	     { keep = 0 }
	     /^\[FAIL\] |^\[----\] [^ ]+::[^ ]+: (CRASH|Timed out)/ { print }' "$1" 2>/dev/null | head -n 40)
	[[ -n $out ]] || return 0
	echo "-- $2: failed tests --"
	echo "$out"
}

# ---- jobs ------------------------------------------------------------------------------

missing_packages() {
	local p
	for p in "${PACKAGES[@]}"; do
		[[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] ||
			echo "$p"
	done
}

job_packages() {
	local missing sudo=()
	missing=$(missing_packages | paste -sd ' ')
	if [[ -z ${missing// /} ]]; then
		echo "NOTE: all ${#PACKAGES[@]} packages installed"
		return 0
	fi
	echo "missing: $missing"
	if ((EUID != 0)); then
		if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
			sudo=(sudo -n)
		else
			echo "NOTE: not root and no password-less sudo; install: $missing"
			return 1
		fi
	fi
	# Other apt users (unattended upgrades) may hold the lock for a while.
	# shellcheck disable=SC2086 # word splitting of the list is intended
	if ! "${sudo[@]}" apt-get update -o DPkg::Lock::Timeout=600 ||
		! "${sudo[@]}" apt-get install -y --no-install-recommends \
			-o DPkg::Lock::Timeout=600 $missing; then
		echo "NOTE: apt-get failed for: $missing"
		return 1
	fi
	local still
	still=$(missing_packages | paste -sd ' ')
	if [[ -n ${still// /} ]]; then
		echo "NOTE: still missing after apt-get: $still"
		return 1
	fi
	echo "NOTE: installed $missing"
}

job_build() {
	cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_WERROR=ON &&
		cmake --build "$BUILD" -j "$FERRY_JOBS" || return 1
	echo "NOTE: gcc $(gcc -dumpfullversion), RelWithDebInfo, -Werror"
}

job_format() {
	local files n
	if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
		files=$(git -C "$ROOT" ls-files --cached --others --exclude-standard -- '*.c' '*.h')
	else
		files=$(find . -path './build*' -prune -o \( -name '*.c' -o -name '*.h' \) -print)
	fi
	n=$(wc -w <<<"$files")
	# shellcheck disable=SC2086
	if clang-format --dry-run -Werror $files; then
		echo "NOTE: $n files clean"
	else
		echo "NOTE: clang-format differs (fix: clang-format -i <file>)"
		return 1
	fi
}

# Criterion reports a test's result before its worker process exits, so a leak
# found by LeakSanitizer at exit does not fail the test: the reports go to
# files (log_path) and a report fails the job. Criterion 2.4's runner itself
# leaks a few blocks (allocated straight from libcriterion, one per test with a
# .timeout, it seems): a report made only of such leaks is not ours.
asan_report_is_criterions() { # report
	awk '/ERROR: (AddressSanitizer|UndefinedBehaviorSanitizer)|runtime error/ { other = 1 }
	     /^(Direct|Indirect) leak of/ { blocks++; inblock = 1; next }
	     inblock && /^ *#1 / { if ($0 ~ /libcriterion\.so/) crit++; inblock = 0 }
	     END { exit !(!other && blocks > 0 && crit == blocks) }' "$1"
}

job_asan() {
	local rep=$LOGS/asan-reports rc f bad=() ignored=0
	rm -rf "$ASAN_BUILD" "$rep"
	mkdir -p "$rep"
	# No -Werror here: warnings are the build job's; gcc warns more under ASan.
	cmake -S "$ROOT" -B "$ASAN_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DFERRY_SANITIZE=address,undefined &&
		cmake --build "$ASAN_BUILD" -j "$FERRY_JOBS" || return 1
	# Leaks are judged from the report files below; LeakSanitizer's own exit code
	# (23) would otherwise fail the run for the runner's leak in libcriterion.
	ASAN_OPTIONS=log_path=$rep/asan:detect_leaks=1:abort_on_error=0 \
		LSAN_OPTIONS=exitcode=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$ASAN_BUILD/tests/ferry-tests" --verbose
	rc=$?
	for f in "$rep"/*; do
		[[ -f $f ]] || continue
		if asan_report_is_criterions "$f"; then
			ignored=$((ignored + 1))
		else
			bad+=("$f")
		fi
	done
	if ((${#bad[@]})); then
		for f in "${bad[@]}"; do
			echo "---- $f ----"
			head -n 60 "$f"
		done
		echo "NOTE: ${#bad[@]} sanitizer report(s) in ${rep#"$ROOT"/}"
		return 1
	fi
	echo "NOTE: $(synthesis "$LOGS/asan.log"), no sanitizer report" \
		"$( ((ignored)) && echo "(ignored $ignored of Criterion's own leaks)")"
	return "$rc"
}

# Criterion runs each test in a worker that it re-executes (BoxFort), so
# valgrind must follow children (--trace-children=yes); Criterion itself then
# runs one worker at a time. As with ASan, a worker's errors found at exit do
# not fail its test, so each process logs to its own file and any file with
# errors fails the job. Criterion's IPC library (nanomsg) leaves blocks
# "possibly lost" in children that a test forks: suppressed, and only those.
# A process that execs a program outside the build (sh, cat: not traced)
# leaves a log with no summary; it is an error only if it shows one.
vg_log_is_bad() { # log
	grep -q 'ERROR SUMMARY: [1-9]' "$1" && return 0
	grep -q 'ERROR SUMMARY: 0 errors' "$1" && return 1
	grep -Eq '^==[0-9]+== +(Invalid |Conditional jump|Use of uninitialised|Syscall param|Mismatched|Source and destination overlap|Process terminating with default action of signal (4|6|7|8|11) )' "$1"
}

job_valgrind() {
	local dir=$LOGS/valgrind supp f n=0 untraced=0 bad=()
	rm -rf "$dir"
	mkdir -p "$dir"
	supp=$dir/criterion.supp
	cat >"$supp" <<'EOF'
{
   criterion-nanomsg-in-forked-child
   Memcheck:Leak
   match-leak-kinds: possible
   ...
   obj:*/libnanomsg.so*
   ...
}
{
   libnl-constructor-strings-in-forked-child
   Memcheck:Leak
   match-leak-kinds: possible
   ...
   fun:__trans_list_add
   ...
}
EOF
	valgrind --leak-check=full --errors-for-leak-kinds=definite,possible --error-exitcode=1 \
		--trace-children=yes --trace-children-skip='/usr/*,/bin/*,/sbin/*' \
		--suppressions="$supp" --log-file="$dir/vg.%p.log" \
		"$BUILD/tests/ferry-tests" --verbose --filter "$FERRY_VALGRIND_FILTER"
	local rc=$?
	for f in "$dir"/vg.*.log; do
		[[ -f $f ]] || continue
		n=$((n + 1))
		grep -q 'ERROR SUMMARY' "$f" || untraced=$((untraced + 1))
		vg_log_is_bad "$f" && bad+=("$f")
	done
	if ((${#bad[@]})); then
		for f in "${bad[@]}"; do
			echo "---- $f ----"
			grep -v '^==[0-9]*== *$' "$f" | tail -n 40
		done
		echo "NOTE: memcheck errors in ${#bad[@]} of $n processes"
		return 1
	fi
	echo "NOTE: $FERRY_VALGRIND_FILTER: $(synthesis "$LOGS/valgrind.log"), $n processes clean" \
		"($untraced exec'd an untraced program)"
	return "$rc"
}

# clang warns about things gcc does not (-Wcast-align on x86, declarations
# only used in sizeof): counted and shown, fatal unless FERRY_CLANG_WERROR=0.
job_clang() {
	local werror=OFF n t targets=""
	if ! command -v clang >/dev/null; then
		echo "SKIP: clang is not installed"
		return 77
	fi
	[[ ${FERRY_CLANG_WERROR:-1} == 1 ]] && werror=ON
	rm -rf "$FUZZ_BUILD"
	CC=clang cmake -S "$ROOT" -B "$FUZZ_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DFERRY_WERROR="$werror" -DFERRY_FUZZ=ON &&
		cmake --build "$FUZZ_BUILD" -j "$FERRY_JOBS" || return 1
	for t in "$FUZZ_BUILD"/tests/fuzz/fuzz_*; do
		[[ -x $t ]] && targets+=" $(basename "$t")"
	done
	n=$(grep -a -c ': warning: ' "$LOGS/clang.log")
	echo "NOTE: clang $(clang -dumpversion), $n warning(s)$( ((n)) && echo ' (grep warning: build/logs/clang.log)'); fuzz targets:${targets:- none}"
}

# The corpus a target starts from: its own seeds, or the stream seeds of fuzz_load.
seed_dir() {
	local d=$ROOT/tests/fuzz/corpus/$1
	[[ -d $d ]] || d=$ROOT/tests/fuzz/corpus/fuzz_load
	echo "$d"
}

job_fuzz() {
	local t bin work rc=0 out total=0 runs
	local targets=()
	for bin in "$FUZZ_BUILD"/tests/fuzz/fuzz_*; do
		[[ -x $bin ]] && targets+=("$(basename "$bin")")
	done
	if ((${#targets[@]} == 0)); then
		if [[ ! -d $FUZZ_BUILD ]]; then
			echo "SKIP: no clang build (see the clang job)"
		else
			echo "SKIP: no fuzz targets were built (clang cannot link -fsanitize=fuzzer?)"
		fi
		return 77
	fi
	for t in "${targets[@]}"; do
		work=$FUZZ_BUILD/corpus/$t
		out=$LOGS/fuzz-$t.log
		mkdir -p "$work"
		echo "== $t: ${FERRY_FUZZ_SECONDS}s from $(seed_dir "$t") (log: $out)"
		# The new corpus entries go to the first directory, never to the seeds.
		"$FUZZ_BUILD/tests/fuzz/$t" -max_total_time="$FERRY_FUZZ_SECONDS" -timeout=25 \
			-rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$LOGS/$t-" \
			"$work" "$(seed_dir "$t")" >"$out" 2>&1
		local trc=$?
		runs=$(grep -a 'stat::number_of_executed_units' "$out" | awk '{print $2}')
		if ((trc != 0)); then
			rc=1
			echo "$t FAILED (exit $trc):"
			grep -a -v '^#' "$out" | grep -a -v '# Uses:' | tail -n 50
			for a in "$LOGS/$t"-*; do
				[[ -f $a ]] || continue
				echo "input $a ($(stat -c %s "$a") bytes), first 256 as hex:"
				od -An -tx1 -N256 "$a"
				echo "reproduce: ${FUZZ_BUILD#"$ROOT"/}/tests/fuzz/$t ${a#"$ROOT"/}"
			done
		else
			echo "$t: ${runs:-?} inputs, no finding"
		fi
		total=$((total + ${runs:-0}))
	done
	if ((rc)); then
		echo "NOTE: a fuzz target found something (input and command above)"
	else
		echo "NOTE: ${targets[*]}: ${FERRY_FUZZ_SECONDS}s each, $total inputs, no finding"
	fi
	return "$rc"
}

# "FILTER passing/tested, ..." from guest-suite.sh's output: each "=== guest-suite:
# ferry-tests --filter 'F'" line and the Synthesis line that follows it.
rig_summary() {
	local f="" line out=""
	while IFS= read -r line; do
		case $line in
		"=== guest-suite: ferry-tests --filter '"*)
			f=${line#*--filter \'}
			f=${f%\'}
			;;
		*Synthesis:*)
			if [[ $line =~ Tested:\ ([0-9]+)\ \|\ Passing:\ ([0-9]+) ]]; then
				out+="${out:+, }${f:-?} ${BASH_REMATCH[2]}/${BASH_REMATCH[1]}"
			fi
			;;
		esac
	done <"$1"
	echo "${out:-no Synthesis line}"
}

# The rig's contract: exit 0 passed, 77 skipped (with a "SKIP: why" line),
# anything else failed. It gets the build dir and a log dir of its own.
job_rig() {
	local smoke=$ROOT/tests/rig/smoke.sh rc
	if [[ ! -f $smoke ]]; then
		echo "SKIP: tests/rig/smoke.sh is not in the tree yet"
		return 77
	fi
	mkdir -p "$LOGS/rig"
	FERRY_BUILD_DIR=$BUILD FERRY_LOG_DIR=$LOGS/rig bash "$smoke"
	rc=$?
	if ((rc == 77)) && ! grep -aq '^SKIP: ' "$LOGS/rig.log"; then
		echo "SKIP: smoke.sh skipped without saying why"
	fi
	# The rig works: the RDMA suites for real (every rdma_* suite, in one guest).
	if ((rc == 0)) && [[ -x $ROOT/tests/rdma/run-in-rig.sh ]]; then
		echo "== rdma suites in the rig: tests/rdma/run-in-rig.sh"
		bash "$ROOT/tests/rdma/run-in-rig.sh" -b "$BUILD" -t 1200 2>&1 |
			tee "$LOGS/rig/rdma-suites.log"
		rc=${PIPESTATUS[0]}
		((rc == 77)) && echo "SKIP: tests/rdma/run-in-rig.sh could not run the rig"
		((rc == 0)) && echo "NOTE: smoke passed; in the soft-RoCE guest (passing/tested):" \
			"$(rig_summary "$LOGS/rig/rdma-suites.log")"
	fi
	return "$rc"
}

# ThreadSanitizer: the CLI's migrations through the threaded paths (worker pool,
# dirty log against running vCPUs, watchdog, cancel); see tests/tsan/run.sh.
job_tsan() {
	local out
	rm -rf "$TSAN_BUILD"
	cmake -S "$ROOT" -B "$TSAN_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DFERRY_SANITIZE=thread -DFERRY_TESTS=OFF >/dev/null &&
		cmake --build "$TSAN_BUILD" -j "$FERRY_JOBS" --target ferry-cli || return 1
	out=$(FERRY_TSAN_BUILD=$TSAN_BUILD bash "$ROOT/tests/tsan/run.sh" 2>&1)
	local rc=$?
	echo "$out"
	echo "NOTE: $(grep -a '^tsan: ' <<<"$out" | tail -n 1)"
	return "$rc"
}

# KVM suites: on the host when /dev/kvm answers (the final run has them), else
# inside the rig's QEMU guest with nested KVM (77 from the script: skipped).
job_kvm() {
	local rc
	if (exec 3<>/dev/kvm) 2>/dev/null; then
		echo "SKIP: /dev/kvm is usable here: the kvm suites run in the final ferry-tests run"
		return 77
	fi
	echo "no usable /dev/kvm on this host: the kvm suites run in the nested-KVM rig"
	FERRY_BUILD_DIR=$BUILD bash "$ROOT/tests/kvm/nested-rig.sh" --out-dir "$LOGS/kvm-rig" -t 1200
	rc=$?
	((rc == 77)) && echo "SKIP: the nested-KVM rig cannot run here (reason above)"
	return "$rc"
}

# Jobs run in `bash -c` under timeout: they see exported functions and
# variables only, and arrays do not export, so the package list goes as a string.
export PACKAGES_LIST="${PACKAGES[*]}"
job_packages_exported() {
	# shellcheck disable=SC2206
	PACKAGES=($PACKAGES_LIST)
	job_packages
}
export -f job_packages job_packages_exported job_build job_format job_asan job_valgrind \
	job_clang job_fuzz job_rig job_kvm job_tsan missing_packages seed_dir synthesis asan_report_is_criterions \
	vg_log_is_bad rig_summary

# ---- main --------------------------------------------------------------------------

echo "== ferry $MODE: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) cores, logs in build/logs/"

if [[ $MODE == test ]]; then
	# A fresh build every time: what CI sees is what a new clone builds.
	rm -rf "$BUILD"
fi
mkdir -p "$LOGS"

if ! run_job packages 1800; then
	print_table
	exit 1
fi
if ! run_job build 1200; then
	print_table
	exit 1
fi

if [[ $MODE == demo ]]; then
	FERRY=$BUILD/ferry
	help=$("$FERRY" help 2>&1 </dev/null)
	print_table
	if grep -Eq '^[[:space:]]*(ferry[[:space:]]+)?demo([[:space:]]|$)' <<<"$help"; then
		echo "== ferry demo"
		exec "$FERRY" demo
	fi
	if grep -Eq '^[[:space:]]*(ferry[[:space:]]+)?sample([[:space:]]|$)' <<<"$help" &&
		grep -Eq '^[[:space:]]*(ferry[[:space:]]+)?inspect([[:space:]]|$)' <<<"$help"; then
		echo "== ferry has no demo yet: write a sample stream and inspect it"
		echo "\$ build/ferry sample /tmp/ferry-sample.qevm && build/ferry inspect /tmp/ferry-sample.qevm"
		"$FERRY" sample /tmp/ferry-sample.qevm && exec "$FERRY" inspect /tmp/ferry-sample.qevm
		exit 1
	fi
	echo "this ferry has neither 'demo' nor 'sample' and 'inspect' yet ('ferry help' lists them" \
		"when they exist); it built fine: $("$FERRY" --version 2>&1)"
	exit 1
fi

# test: the checks, then the main run last.
run_job format 300
run_job asan 1800
run_job valgrind 1200
run_job tsan 900
run_job clang 1200
run_job fuzz $((FERRY_FUZZ_SECONDS * 4 + 300))
run_job rig 1500
run_job kvm 1500

print_table
echo "== tests: build/tests/ferry-tests (log: build/logs/tests.log)"
timeout -k 30 "$FINAL_TIMEOUT" "$BUILD/tests/ferry-tests" 2>&1 </dev/null | tee "$LOGS/tests.log"
rc=${PIPESTATUS[0]}
((rc == 124)) && echo "ferry-tests timed out after $(fmt_time "$FINAL_TIMEOUT")"
if ((rc != 0 || ${#FAILED[@]} != 0)); then
	exit 1
fi
exit 0
