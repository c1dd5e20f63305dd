"""A live-stream feeder for tests: replays an MPEG-TS file's packets in real time to a pipe or a TCP port.

    python tests/live_feeder.py FILE.ts pipe:1 --log sent.txt          # a stream on standard output
    python tests/live_feeder.py FILE.ts tcp://127.0.0.1:PORT?listen=1  # waits for one client, then streams

Packets are remuxed unchanged (the same frames as the file) and flushed at once, each at its own time
(pts, from the first packet) times `--speed`'s inverse. `--loop N` sends the file N times, each copy's timestamps after the last (a long stream from a short
file). `--log` gets one line per video packet: its pts
in seconds and the wall-clock time (`time.time()`) it was sent. `--stop-after S` exits abruptly (as a
killed camera would) after S seconds of stream. Standard library and PyAV only; tests start it with a
timeout and stop it by pid.
"""

from __future__ import annotations

import argparse
import os
import time

import av


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--log")
    parser.add_argument("--stop-after", type=float)
    parser.add_argument("--loop", type=int, default=1)
    args = parser.parse_args()
    log = open(args.log, "w", buffering=1) if args.log else None
    with av.open(args.source) as source:
        stream = source.streams.video[0]
        packets = [p for p in source.demux(stream) if p.dts is not None]
        out = av.open(args.target, "w", format="mpegts", options={"mpegts_copyts": "1", "flush_packets": "1"})
        target = out.add_stream_from_template(stream)
        start_wall, first_pts = None, None
        length = packets[-1].pts - packets[0].pts + (packets[1].pts - packets[0].pts if len(packets) > 1 else 1)
        for copy in range(args.loop):
            for original in packets:
                packet = _copy(original, copy * length)  # a muxed packet gives its data away: send copies
                t = float(packet.pts * stream.time_base)
                if first_pts is None:
                    first_pts = t
                if args.stop_after is not None and t - first_pts >= args.stop_after:
                    os._exit(9)  # no trailer, no flush: a feeder that dies
                if start_wall is not None:
                    delay = start_wall + (t - first_pts) / args.speed - time.time()
                    if delay > 0:
                        time.sleep(delay)
                packet.stream = target
                out.mux(packet)
                if start_wall is None:  # the clock starts once the first packet is out (a TCP client is there)
                    start_wall = time.time()
                if log:
                    log.write(f"{t - first_pts:.6f} {time.time():.6f}\n")
        out.close()


def _copy(packet, shift: int):
    """The packet again, `shift` (in its time base) later."""
    copy = av.Packet(bytes(packet))
    copy.pts, copy.dts = packet.pts + shift, packet.dts + shift
    copy.time_base, copy.is_keyframe = packet.time_base, packet.is_keyframe
    return copy


if __name__ == "__main__":
    main()
