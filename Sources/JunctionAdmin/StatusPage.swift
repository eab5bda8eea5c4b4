/// The status page at `/`: the node and its connections table, refreshed every two
/// seconds from `/api/node` and `/api/connections`. Self-contained (no network beyond the
/// node). With a token, open it as `/#token=TOKEN`: the page keeps the token for the tab
/// and sends it as a bearer token.
enum StatusPage {
    static let html = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>Junction status</title>
        <style>
        body { font: 14px system-ui, sans-serif; margin: 24px; color: #222; }
        h1 { font-size: 22px; margin: 0 0 4px; }
        #meta { color: #555; margin-bottom: 16px; }
        table { border-collapse: collapse; width: 100%; }
        th, td { padding: 5px 8px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
        th { background: #f3f3f3; position: sticky; top: 0; }
        td.text, th.text { text-align: left; }
        .up { color: #1a7f37; font-weight: 600; } .connecting, .reconnecting { color: #b35900; font-weight: 600; } .stalled { color: #cf222e; font-weight: 600; }
        #error { color: #b00020; margin: 8px 0; }
        </style></head>
        <body>
        <h1 id="title">Junction</h1>
        <div id="meta">loading…</div>
        <div id="error"></div>
        <table><thead><tr>
        <th class="text">peer</th><th class="text">state</th><th class="text">stack</th><th class="text">direction</th><th class="text">address</th>
        <th>links</th><th>sent</th><th>received</th><th>msgs out</th><th>msgs in</th><th>compression</th><th>idle s</th><th>retries</th><th>queued</th><th>unacked</th>
        </tr></thead><tbody id="rows"></tbody></table>
        <script>
        const match = location.hash.match(/token=([^&]+)/);
        if (match) { sessionStorage.setItem("junction-token", decodeURIComponent(match[1])); history.replaceState(null, "", location.pathname); }
        const token = sessionStorage.getItem("junction-token");
        const headers = token ? { Authorization: "Bearer " + token } : {};
        const bytes = n => n >= 1e9 ? (n / 1e9).toFixed(2) + " GB" : n >= 1e6 ? (n / 1e6).toFixed(2) + " MB" : n >= 1e3 ? (n / 1e3).toFixed(1) + " kB" : n + " B";
        const cell = (text, cls) => { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; };
        async function get(path) {
          const response = await fetch(path, { headers });
          const body = await response.json();
          if (!response.ok) throw new Error(body.error || response.statusText);
          return body;
        }
        async function refresh() {
          try {
            const [node, connections] = await Promise.all([get("/api/node"), get("/api/connections")]);
            document.getElementById("title").textContent = "Junction " + node.name;
            document.getElementById("meta").textContent = node.stacks.map(s => s.name + " (" + s.kind + ") on " + (s.listening.join(", ") || "no acceptor")).join(" · ")
              + " · " + connections.length + " connection" + (connections.length == 1 ? "" : "s") + " · updated " + new Date().toLocaleTimeString();
            const rows = document.getElementById("rows");
            rows.replaceChildren(...connections.map(c => {
              const tr = document.createElement("tr");
              tr.append(cell(c.peer, "text"), cell(c.state, "text " + c.state), cell(c.stack, "text"), cell(c.direction, "text"), cell(c.address, "text"),
                cell(c.liveLinks + "/" + c.poolSize), cell(bytes(c.bytesSent)), cell(bytes(c.bytesReceived)), cell(c.messagesSent), cell(c.messagesReceived),
                cell(c.compressionRatio ? c.compressionRatio.toFixed(2) + "x" : "—"), cell(c.idleSeconds == null ? "—" : c.idleSeconds.toFixed(1)),
                cell(c.retries), cell(c.queued), cell(c.unacknowledged));
              return tr;
            }));
            document.getElementById("error").textContent = "";
          } catch (error) {
            document.getElementById("error").textContent = "cannot read the node: " + error.message;
          }
        }
        refresh();
        setInterval(refresh, 2000);
        </script>
        </body></html>
        """
}
