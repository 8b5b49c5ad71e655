/**
 * One port for HTTP/1.1 and cleartext HTTP/2 with prior knowledge (gRPC):
 * the first bytes of a connection say which it is. An HTTP/2 client opens
 * with the connection preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n` (RFC 9113
 * §3.4), which no HTTP/1.1 request line can start like.
 */
import type { Server as HttpServer } from 'node:http';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';

export const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** 'http2' or 'http1' once the first bytes decide, undefined while they could still be a preface. */
export function protocolOf(head: Buffer): 'http1' | 'http2' | undefined {
  const length = Math.min(head.length, HTTP2_PREFACE.length);
  if (!head.subarray(0, length).equals(HTTP2_PREFACE.subarray(0, length))) return 'http1';
  return head.length >= HTTP2_PREFACE.length ? 'http2' : undefined;
}

/**
 * The socket as a stream that first replays `head`. Node's HTTP/2 reads a
 * socket's native handle directly and would miss bytes already read; given a
 * plain Duplex it reads through it instead.
 */
function replaying(socket: Socket, head: Buffer): Duplex {
  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, encoding, done) {
      socket.write(chunk, encoding, done);
    },
    final(done) {
      socket.end(done);
    },
    destroy(error, done) {
      socket.destroy(error ?? undefined);
      done(error);
    },
  });
  duplex.push(head);
  socket.on('data', (chunk: Buffer) => {
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on('end', () => duplex.push(null));
  socket.on('error', (error) => duplex.destroy(error));
  socket.on('close', () => duplex.destroy());
  return duplex;
}

/**
 * Reads the first bytes of `socket` and hands it to `http1` (the HTTP/1.1
 * server's own connection handling) or to `http2` (a cleartext HTTP/2 server
 * connection handler), with nothing lost.
 */
function sniffConnection(socket: Socket, http1: (socket: Socket) => void, http2: (connection: Duplex) => void): void {
  let head: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
    const protocol = protocolOf(head);
    if (!protocol) return;
    socket.off('data', onData);
    socket.pause();
    if (protocol === 'http2') {
      // Each gRPC message goes out as it is written (Node's own HTTP/2 sockets do this; a wrapped one must be told).
      socket.setNoDelay(true);
      return http2(replaying(socket, head));
    }
    http1(socket);
    // The HTTP/1.1 parser reads the native handle from now on; what was read already it gets as a 'data' event.
    socket.emit('data', head);
    socket.resume();
  };
  socket.on('data', onData);
  // A connection closed before it said anything: nothing to serve.
  socket.once('error', () => socket.destroy());
}

/**
 * Makes the HTTP/1.1 `server` also serve cleartext HTTP/2 on its port: each
 * accepted connection goes to the server's own handling, or to `http2` when it
 * opens with the preface. The server keeps listening itself, so its
 * connection tracking (closeAllConnections) and its header and request
 * timeouts keep working for HTTP/1.1.
 */
export function serveHttp2Too(server: HttpServer, http2: (connection: Duplex) => void): void {
  const handlers = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => sniffConnection(socket, (accepted) => handlers.forEach((handler) => handler.call(server, accepted)), http2));
}
