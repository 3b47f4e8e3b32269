"""moto's server on a port the kernel picks (port 0), kept bound: prints the
port on stdout once it listens, then serves until killed. Tests never guess a
free port that another process could take first."""
import sys

from moto.moto_server.threaded_moto_server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
try:
    sys.stdin.read()  # until the test closes our stdin or kills us
finally:
    server.stop()
