// The web chat page: one WebSocket to /chat/ws, bot messages in Telegram's HTML subset, and in
// demo mode a persona picker. No dependencies; bot HTML never goes through innerHTML.
(() => {
  "use strict";

  const config = JSON.parse(document.getElementById("chat-config").textContent);
  const L = config.labels;
  const $ = (id) => document.getElementById(id);
  const list = $("messages");
  const statusLine = $("status");
  const input = $("input");
  const sendButton = $("send");

  // --- Telegram HTML subset -> DOM (defence in depth: the server escapes already) ---

  const ALLOWED = new Set(["b", "i", "u", "s", "a", "code", "pre", "blockquote", "br"]);
  const TAG = /<(\/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^\s"'>\/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?)*)\s*\/?>/g;
  const NAMED = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };
  const URL_IN_TEXT = /https?:\/\/[^\s<>"'，。、；：！？（）「」【】]*[^\s<>"'，。、；：！？（）「」【】.,;:!?)\]]/g;

  function decode(text) {
    return text.replace(/&(#[xX][0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-zA-Z]+);/g, (whole, name) => {
      if (name[0] !== "#") return Object.hasOwn(NAMED, name) ? NAMED[name] : whole;
      const code = name[1] === "x" || name[1] === "X" ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    });
  }

  function safeUrl(raw) {
    try {
      const url = new URL(raw, location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch {
      return null;
    }
  }

  function hrefOf(attrs) {
    const m = /(?:^|\s)href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))/i.exec(attrs);
    return m ? safeUrl(decode(m[1] ?? m[2] ?? m[3])) : null;
  }

  function link(href) {
    const a = document.createElement("a");
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  function appendText(parent, text, inLink) {
    if (!text) return;
    if (inLink) return parent.append(text);
    let last = 0;
    for (const m of text.matchAll(URL_IN_TEXT)) {
      const href = safeUrl(m[0]);
      if (!href) continue;
      parent.append(text.slice(last, m.index));
      const a = link(href);
      a.textContent = m[0];
      parent.append(a);
      last = m.index + m[0].length;
    }
    parent.append(text.slice(last));
  }

  // Allowed tags become elements; any other tag, or a stray closing tag, is shown as the text it is.
  function render(html) {
    const root = document.createElement("div");
    root.className = "text";
    const stack = [root];
    const top = () => stack[stack.length - 1];
    const inLink = () => stack.some((el) => el.tagName === "A");
    let last = 0;
    for (const m of html.matchAll(TAG)) {
      const [source, closing, rawName, attrs] = m;
      const name = rawName.toLowerCase();
      appendText(top(), decode(html.slice(last, m.index)), inLink());
      last = m.index + source.length;
      if (!ALLOWED.has(name)) {
        top().append(source);
      } else if (closing) {
        const at = stack.findLastIndex((el, i) => i > 0 && el.tagName.toLowerCase() === name);
        if (at > 0) stack.length = at;
        else top().append(source);
      } else if (name === "br") {
        top().append(document.createElement("br"));
      } else if (name === "a") {
        const href = hrefOf(attrs);
        if (href && !inLink()) {
          const a = link(href);
          top().append(a);
          stack.push(a);
        } else {
          top().append(source);
        }
      } else {
        const el = document.createElement(name);
        top().append(el);
        stack.push(el);
      }
    }
    appendText(top(), decode(html.slice(last)), inLink());
    return root;
  }

  // --- the message list ---

  function addMessage(kind, fill) {
    const li = document.createElement("li");
    li.className = "msg " + kind;
    fill(li);
    list.append(li);
    list.scrollTop = list.scrollHeight;
    return li;
  }

  function showReply(frame) {
    addMessage("bot", (li) => {
      // A photo (e.g. a survey chart) above its text, as Telegram shows a captioned photo; from
      // our own file route only, like attachments.
      const photo = frame.photo;
      if (photo && typeof photo.url === "string" && photo.url.startsWith("/chat/files/")) {
        const img = document.createElement("img");
        img.className = "photo";
        img.src = new URL(photo.url, location.href).href;
        img.alt = String(photo.name ?? "");
        li.append(img);
      }
      li.append(render(String(frame.text ?? "")));
      // An attachment: a link to our own download route (which checks who may have it).
      const doc = frame.document;
      if (doc && typeof doc.url === "string" && doc.url.startsWith("/chat/files/")) {
        const a = link(new URL(doc.url, location.href).href);
        a.className = "file";
        a.setAttribute("download", "");
        a.textContent = "📎 " + String(doc.name ?? "");
        li.append(a);
      }
      const rows = Array.isArray(frame.buttons) ? frame.buttons : [];
      if (!rows.length) return;
      const box = document.createElement("div");
      box.className = "buttons";
      for (const row of rows) {
        if (!Array.isArray(row)) continue;
        const line = document.createElement("div");
        line.className = "row";
        for (const b of row) {
          const label = String(b?.label ?? "");
          if (typeof b?.payload === "string" && b.payload) {
            const button = document.createElement("button");
            button.type = "button";
            button.textContent = label;
            button.addEventListener("click", () => press(label, b.payload));
            line.append(button);
          } else if (typeof b?.url === "string" && safeUrl(b.url)) {
            const a = link(safeUrl(b.url));
            a.className = "btn";
            a.textContent = label;
            line.append(a);
          }
        }
        box.append(line);
      }
      li.append(box);
    });
  }

  // --- the socket ---

  let socket = null;
  let generation = 0; // frames and events of a replaced socket are ignored
  let retries = 0;
  let timer = null;
  let firstText = null; // sent once, as soon as the next socket opens
  let identity = 0; // bumped when the demo switches persona: unsent messages stay with their sender

  function setOnline(online) {
    sendButton.disabled = !online;
    statusLine.textContent = online ? "" : socket ? L.disconnected : L.connecting;
  }

  function send(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  function sendText(text) {
    if (!send({ type: "text", text })) return false;
    addMessage("me", (li) => (li.textContent = text));
    return true;
  }

  function press(label, payload) {
    if (send({ type: "button", payload })) addMessage("me press", (li) => (li.textContent = label));
  }

  // The server could not handle a message (its database was down) and handed it back: say so
  // once, keep it, and send it again after 1 s, 2 s, 4 s ... 30 s until the server takes it.
  function resendLater(unsent) {
    const count = Number.isInteger(unsent.resend) ? unsent.resend + 1 : 1;
    const frame =
      unsent.type === "button"
        ? { type: "button", payload: String(unsent.payload ?? ""), resend: count }
        : { type: "text", text: String(unsent.text ?? ""), resend: count };
    const mine = identity;
    const attempt = () => {
      if (mine !== identity) return;
      if (!send(frame)) setTimeout(attempt, 2000); // offline: try again once reconnected
    };
    setTimeout(attempt, Math.min(30000, 1000 * 2 ** (count - 1)));
  }

  function showError(frame) {
    const unsent = frame.code === "unavailable" && typeof frame.unsent === "object" ? frame.unsent : null;
    if (!unsent?.resend) addMessage("error", (li) => (li.textContent = String(frame.text ?? "")));
    if (unsent) resendLater(unsent);
  }

  function connect() {
    clearTimeout(timer);
    const mine = ++generation;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/chat/ws?lang=${encodeURIComponent(config.locale)}`);
    statusLine.textContent = retries ? L.disconnected : L.connecting;
    sendButton.disabled = true;
    ws.addEventListener("open", () => {
      if (mine !== generation) return;
      socket = ws;
      retries = 0;
      setOnline(true);
      if (firstText) {
        const text = firstText;
        firstText = null;
        sendText(text);
      }
    });
    ws.addEventListener("message", (e) => {
      if (mine !== generation) return;
      let frame;
      try {
        frame = JSON.parse(e.data);
      } catch {
        return;
      }
      if (frame.type === "reply") showReply(frame);
      else if (frame.type === "error") showError(frame);
    });
    ws.addEventListener("close", (e) => {
      if (mine !== generation) return;
      if (e.code === 1009) addMessage("error", (li) => (li.textContent = L.too_large));
      socket = null;
      retries += 1;
      sendButton.disabled = true;
      statusLine.textContent = L.disconnected;
      timer = setTimeout(connect, Math.min(10000, 500 * 2 ** retries));
    });
  }

  function disconnect() {
    generation += 1;
    clearTimeout(timer);
    if (socket) socket.close(1000);
    socket = null;
    retries = 0;
  }

  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (text && sendText(text)) input.value = "";
    input.focus();
  });

  function showChat(name) {
    if (config.demo) {
      $("personas").hidden = true;
      $("whoami").hidden = false;
      $("current-name").textContent = name || L.anonymous;
    }
    $("chat").hidden = false;
    input.focus();
  }

  // --- demo: the persona picker ---

  async function showPicker() {
    disconnect();
    $("chat").hidden = true;
    $("whoami").hidden = true;
    const box = $("persona-groups");
    $("personas").hidden = false;
    box.replaceChildren();
    let data;
    try {
      const r = await fetch(`/chat/personas?lang=${encodeURIComponent(config.locale)}`, { credentials: "same-origin" });
      if (!r.ok) throw new Error(String(r.status));
      data = await r.json();
    } catch {
      box.textContent = L.persona_error;
      return;
    }
    const groups = [...data.groups, { title: L.visitor, people: [{ id: null, label: L.anonymous }] }];
    for (const group of groups) {
      const title = document.createElement("h3");
      title.textContent = group.title;
      const people = document.createElement("div");
      people.className = "persona-list";
      for (const p of group.people) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "persona";
        button.dataset.personId = p.id === null ? "" : String(p.id);
        button.textContent = p.label;
        button.addEventListener("click", () => choose(p));
        people.append(button);
      }
      box.append(title, people);
    }
  }

  async function choose(person) {
    try {
      const r = await fetch(`/chat/persona?lang=${encodeURIComponent(config.locale)}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ person_id: person.id }),
        credentials: "same-origin",
      });
      if (!r.ok) throw new Error(String(r.status));
    } catch {
      $("persona-groups").prepend(Object.assign(document.createElement("p"), { textContent: L.persona_error }));
      return;
    }
    list.replaceChildren();
    identity += 1;
    showChat(person.id === null ? null : person.label);
    firstText = "/start";
    connect();
  }

  // --- start ---

  if (config.start) {
    firstText = `/start ${config.start}`;
    // The invite is spent once sent: keep it out of the address bar, history and bookmarks.
    const url = new URL(location.href);
    url.searchParams.delete("start");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
  } else if (config.greet) {
    firstText = "/start";
  }
  if (config.demo) $("switch").addEventListener("click", showPicker);
  if (config.demo && !config.current && !config.start) {
    showPicker();
  } else {
    showChat(config.current);
    connect();
  }
})();
