#!/usr/bin/env python3
"""Bridges an emulated board's UART to the broker: QEMU (`-serial tcp:127.0.0.1:PORT`) connects
to this relay, which opens a TCP connection to the broker's MQTT port and copies bytes both ways.
usage: uart-relay.py LISTEN_PORT BROKER_HOST:PORT [--reconnect]

Without --reconnect the relay ends when either side closes. With it, the UART stays up for good
(a serial line has no "connection") and the broker side behaves like a modem: when the broker goes
away its connection is dropped, bytes from the device are discarded until the device sends a
CONNECT (a packet starting with 0x10), and that CONNECT opens a new connection to the broker.
"""
import socket
import sys
import threading

listen_port = int(sys.argv[1])
host, port = sys.argv[2].rsplit(":", 1)
reconnect = "--reconnect" in sys.argv[3:]

server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen_port))
server.listen(1)
print("relay listening", flush=True)
uart, _ = server.accept()
uart.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def open_broker():
    b = socket.create_connection((host, int(port)), timeout=5)
    b.settimeout(None)
    b.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return b


def pump(src, dst):
    try:
        while True:
            data = src.recv(4096)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


if not reconnect:
    broker = open_broker()
    threads = [threading.Thread(target=pump, args=(uart, broker)),
               threading.Thread(target=pump, args=(broker, uart))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sys.exit(0)

lock = threading.Lock()
current = [None]


def downstream(b):
    """Broker -> UART for one broker connection; forgets it when it ends."""
    try:
        while True:
            data = b.recv(4096)
            if not data:
                break
            uart.sendall(data)
    except OSError:
        pass
    with lock:
        if current[0] is b:
            current[0] = None
    try:
        b.close()
    except OSError:
        pass
    print("broker connection closed", flush=True)


while True:
    try:
        data = uart.recv(4096)
    except OSError:
        break
    if not data:
        break
    with lock:
        b = current[0]
    if b is None:
        if data[0] != 0x10:
            continue  # the device has not noticed yet; the line is dead until it reconnects
        try:
            b = open_broker()
        except OSError:
            continue  # broker down: the CONNECT is lost, the device times out and retries
        with lock:
            current[0] = b
        threading.Thread(target=downstream, args=(b,), daemon=True).start()
        print("broker connection opened", flush=True)
    try:
        b.sendall(data)
    except OSError:
        with lock:
            if current[0] is b:
                current[0] = None
