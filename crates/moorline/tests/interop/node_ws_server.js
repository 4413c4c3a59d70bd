// Node `ws` WebSocket server for moorline's interop tests: echoes every message,
// accepts permessage-deflate, picks subprotocol "chat.v1" when offered, and on a
// message "close-me" closes with 4000 "bye". Prints "PORT <n>" once listening.
'use strict';
const { WebSocketServer } = require('ws');

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: { threshold: 0 },
  maxPayload: 64 * 1024 * 1024,
  handleProtocols: (protocols) => (protocols.has('chat.v1') ? 'chat.v1' : false),
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.toString() === 'close-me') {
      ws.close(4000, 'bye');
      return;
    }
    if (!isBinary && data.toString() === 'ping-me') {
      ws.ping(Buffer.from('node'));
      return;
    }
    ws.send(data, { binary: isBinary });
  });
});

wss.on('listening', () => {
  process.stdout.write(`PORT ${wss.address().port}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
