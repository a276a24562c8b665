#!/usr/bin/env python3
"""Bridges an emulated board's UART to the broker: QEMU (`-serial tcp:127.0.0.1:PORT`) connects
to this relay, which opens a TCP connection to the broker's MQTT port and copies bytes both ways
until either side closes. usage: uart-relay.py LISTEN_PORT BROKER_HOST:PORT
"""
import socket
import sys
import threading

listen_port = int(sys.argv[1])
host, port = sys.argv[2].rsplit(":", 1)

server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen_port))
server.listen(1)
print("relay listening", flush=True)
uart, _ = server.accept()
broker = socket.create_connection((host, int(port)))
broker.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
uart.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


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


threads = [threading.Thread(target=pump, args=(uart, broker)), threading.Thread(target=pump, args=(broker, uart))]
for t in threads:
    t.start()
for t in threads:
    t.join()
