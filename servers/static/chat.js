// The chat page (SPEC 4): vanilla JavaScript, nothing from other origins, text-only rendering.
(function () {
    "use strict";

    var contents = document.getElementById("contents");
    var form = document.getElementById("send-form");
    var input = document.getElementById("content");
    var quit = document.getElementById("quit");
    var status = document.getElementById("status");

    // Every line is inserted with textContent, never as HTML (SPEC 3.6, 4.3).
    function appendLine(text, kind) {
        var item = document.createElement("li");
        item.className = "line " + kind;
        item.textContent = text;
        contents.appendChild(item);
        contents.scrollTop = contents.scrollHeight;
    }

    function kindOf(text) {
        if (text.length >= 6 && text.slice(0, 3) === "~~~" && text.slice(-3) === "~~~") {
            return "system";
        }
        return "other";
    }

    function setStatus(state, label) {
        status.dataset.state = state;
        status.textContent = label;
    }

    // SPEC 4.2: the WebSocket URL comes from location (ws:// for http:, wss:// for https:).
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + "/chat");
    var quitting = false;

    ws.onopen = function () {
        setStatus("open", "已连接");
        appendLine("~~~欢迎您进入聊天室~~~", "system local");
    };
    ws.onmessage = function (evt) {
        if (typeof evt.data === "string") {
            appendLine(evt.data, kindOf(evt.data));
        }
    };
    ws.onclose = function (evt) {
        setStatus("closed", "已断开");
        if (!quitting) {
            var why = evt.code === 4409 ? "昵称已在聊天室中" : "连接已关闭";
            var detail = evt.code ? "（" + evt.code + (evt.reason ? " " + evt.reason : "") + "）" : "";
            appendLine("~~~" + why + detail + "~~~", "system local");
        }
    };

    function sendMessage() {
        var message = input.value.trim();
        if (message.length === 0 || ws.readyState !== WebSocket.OPEN) {
            return;
        }
        ws.send(message);
        appendLine("我说：" + message, "mine");
        input.value = "";
    }

    // Enter in the input submits the form; so does the send button.
    form.addEventListener("submit", function (evt) {
        evt.preventDefault();
        sendMessage();
        input.focus();
    });

    quit.addEventListener("click", function (evt) {
        evt.preventDefault();
        quitting = true;
        ws.close(1000);
        location.href = "/login";
    });

    input.focus();
})();
