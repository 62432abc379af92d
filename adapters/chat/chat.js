// The chat page: one WebSocket back to the page's own host, the JSON schema
// of adapters/chat/protocol.py, and every piece of user text inserted with
// textContent, never as HTML.
"use strict";

const messages = document.getElementById("messages");
const nickInput = document.getElementById("nick");
const messageInput = document.getElementById("message");
const statusBadge = document.getElementById("status");
const onlineCount = document.getElementById("online");

let socket = null;
let retryDelay = 500; // ms, doubled after each failed attempt, up to 10 s
let myNick = null;
// The nickname asked for and not yet answered, and when: Enter and the
// change event both ask, and a second ask would spend a message of the rate
// limit. An ask the server dropped unanswered (a flood's notices are capped)
// may be repeated after a while.
let askedNick = null;
let askedAt = 0;
const ASK_AGAIN_AFTER = 2000; // ms

nickInput.value = localStorage.getItem("wschat-nick") || "guest-" + Math.floor(Math.random() * 10000);

function setStatus(state, text) {
  statusBadge.className = "status " + state;
  statusBadge.textContent = text;
}

function addLine(parts, className) {
  const item = document.createElement("li");
  if (className) item.className = className;
  for (const [text, partClass] of parts) {
    const span = document.createElement("span");
    if (partClass) span.className = partClass;
    span.textContent = text;
    item.appendChild(span);
  }
  const atBottom = messages.parentElement.scrollTop + messages.parentElement.clientHeight >= messages.parentElement.scrollHeight - 4;
  messages.appendChild(item);
  if (atBottom) item.scrollIntoView();
}

function showMessage(event) {
  const time = new Date(event.time * 1000).toLocaleTimeString();
  addLine([[time, "time"], [event.nick, "nick"], [event.text, "text"]], "message");
}

function notice(text) {
  addLine([[text, null]], "notice");
}

// "ann", "ann and bob", "ann, bob and cyd", "ann, bob and 37 others".
function nameList(names, more) {
  const all = more ? names.concat([more + (more === 1 ? " other" : " others")]) : names;
  if (all.length < 2) return all.join("");
  return all.slice(0, -1).join(", ") + " and " + all[all.length - 1];
}

// One presence update: who left, took another name, or joined since the
// last one (at most one a second), each list capped by the server and the
// rest counted in "<list>_more".
function showPresence(event) {
  const left = event.left || [];
  const joined = event.joined || [];
  if (left.length) addLine([[nameList(left, event.left_more) + " left", null]], "event");
  for (const [from, to] of event.renamed || []) addLine([[from + " is now " + to, null]], "event");
  if (event.renamed_more) {
    const who = event.renamed_more === 1 ? "1 other changed their name" : event.renamed_more + " others changed their names";
    addLine([[who, null]], "event");
  }
  if (joined.length) addLine([[nameList(joined, event.joined_more) + " joined", null]], "event");
}

const handlers = {
  welcome(event) {
    messages.replaceChildren();
    event.history.forEach(showMessage);
    onlineCount.textContent = event.online;
    messageInput.maxLength = event.max_text;
    join();
  },
  you(event) {
    myNick = event.nick;
    askedNick = null;
    nickInput.value = event.nick;
    localStorage.setItem("wschat-nick", event.nick);
    messageInput.disabled = false;
  },
  message: showMessage,
  presence(event) {
    onlineCount.textContent = event.online;
    showPresence(event);
  },
  error(event) {
    const wait = event.retry_after ? " (try again in " + event.retry_after + " s)" : "";
    notice(event.text + wait);
    askedNick = null;  // refused or not sent: the same name may be asked again
    if (event.code === "nick_lost") {  // choose another: the input is free again
      myNick = null;
      messageInput.disabled = true;
    }
  },
};

function join() {
  const nick = nickInput.value.trim();
  if (!socket || socket.readyState !== WebSocket.OPEN || !nick || nick === myNick) return;
  if (nick === askedNick && Date.now() - askedAt < ASK_AGAIN_AFTER) return;
  askedNick = nick;
  askedAt = Date.now();
  socket.send(JSON.stringify({ type: "join", nick: nick }));
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  setStatus("connecting", "connecting…");
  socket = new WebSocket(scheme + location.host + "/ws");
  socket.addEventListener("open", () => {
    retryDelay = 500;
    myNick = null;
    askedNick = null;
    setStatus("open", "connected");
  });
  socket.addEventListener("message", (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    const handler = handlers[event.type];
    if (handler) handler(event);
  });
  socket.addEventListener("close", (close) => {
    messageInput.disabled = true;
    const why = close.reason ? " (" + close.code + " " + close.reason + ")" : "";
    setStatus("closed", "disconnected, retrying in " + Math.round(retryDelay / 100) / 10 + " s" + why);
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 10000);
  });
}

nickInput.addEventListener("change", join);
nickInput.addEventListener("keydown", (key) => { if (key.key === "Enter") join(); });
messageInput.addEventListener("keydown", (key) => {
  if (key.key !== "Enter" || !messageInput.value.trim()) return;
  if (!socket || socket.readyState !== WebSocket.OPEN) { notice("not connected"); return; }
  socket.send(JSON.stringify({ type: "message", text: messageInput.value }));
  messageInput.value = "";
});

connect();
