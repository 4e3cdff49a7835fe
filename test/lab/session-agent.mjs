// One side of a long-lived lab session, run inside a workload's network
// namespace (plain Node, no TypeScript loader there). Every receive is one
// JSON line on stdout {"ev":"rx","t":<wall ms>}; "ready" once listening or
// connected; "end"/"close"/"error" with the socket's code when a TCP
// connection ends, so the harness can tell a reset from silence; "tx" at
// every send, so a pause of the sender (a starved CPU) is told apart from
// packets sent and not delivered.
//
//   node session-agent.mjs server <tcp-cf|tcp-sf|udp> <port>
//   node session-agent.mjs client <tcp-cf|tcp-sf|udp> <host> <port> [srcPort]
//
// tcp-cf: the client writes every 20 ms, the server echoes.
// tcp-sf: only the server writes (a push every 20 ms); the client never sends data.
// udp:    the client sends every 20 ms from one fixed source port, the server replies
//         (each datagram carries its sequence number; rx/tx lines say it as "seq").
import net from "node:net";
import dgram from "node:dgram";

const [role, kind, ...rest] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify({ ...o, t: Date.now() }) + "\n");
const EVERY = 20;
/** UDP datagrams carry their sequence number ("u<seq>"), echoed back: a lost one is told from a late one. */
const seqOf = (m) => { const n = Number(String(m).slice(1)); return Number.isInteger(n) ? n : undefined; };

// The event loop's own pauses (the process not scheduled, on a busy
// machine): a receive delayed by one is the lab's, not the network's.
let tick = Date.now();
setInterval(() => {
  const now = Date.now();
  if (now - tick > 25) process.stdout.write(JSON.stringify({ ev: "stall", from: tick, t: now }) + "\n");
  tick = now;
}, 10);

function watch(sock) {
  sock.on("data", () => out({ ev: "rx" }));
  sock.on("end", () => out({ ev: "end" }));
  sock.on("error", (e) => out({ ev: "error", code: e.code ?? String(e) }));
  sock.on("close", (hadError) => out({ ev: "close", hadError }));
}

if (role === "server") {
  const port = Number(rest[0]);
  if (kind === "udp") {
    const u = dgram.createSocket({ type: "udp6", ipv6Only: false });
    u.on("message", (m, r) => { const seq = seqOf(m); out({ ev: "rx", seq }); u.send(m, r.port, r.address); out({ ev: "tx", seq }); });
    u.on("error", (e) => out({ ev: "error", code: e.code }));
    u.bind(port, "::", () => out({ ev: "ready" }));
  } else {
    net.createServer((s) => {
      s.setNoDelay(true);
      watch(s);
      if (kind === "tcp-cf") s.on("data", (d) => { s.write(d); out({ ev: "tx" }); });
      else {
        const iv = setInterval(() => { s.write("p"); out({ ev: "tx" }); }, EVERY);
        s.on("close", () => clearInterval(iv));
      }
    }).listen(port, "::", () => out({ ev: "ready" }));
  }
} else if (role === "client") {
  const [host, portS, srcS] = rest;
  const port = Number(portS);
  if (kind === "udp") {
    const u = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
    u.on("message", (m) => out({ ev: "rx", seq: seqOf(m) }));
    u.on("error", (e) => out({ ev: "error", code: e.code }));
    u.bind(Number(srcS), () => {
      out({ ev: "ready" });
      let seq = 0;
      setInterval(() => { const q = seq++; u.send(`u${q}`, port, host, () => {}); out({ ev: "tx", seq: q }); }, EVERY);
    });
  } else {
    const s = net.connect({ host, port, localPort: srcS ? Number(srcS) : undefined });
    s.setNoDelay(true);
    watch(s);
    s.on("connect", () => {
      out({ ev: "ready" });
      if (kind === "tcp-cf") {
        const iv = setInterval(() => { s.write("c"); out({ ev: "tx" }); }, EVERY);
        s.on("close", () => clearInterval(iv));
      }
    });
  }
} else {
  process.stderr.write(`usage: session-agent.mjs server|client ...\n`);
  process.exit(2);
}
