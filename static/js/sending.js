/*
 * The inquiry form, sent with a progress bar: a scan disc is hundreds of megabytes on a
 * phone line. Without this script the form is sent as any form is, and works the same.
 *
 * The form is sent once, by XMLHttpRequest, with the same fields; the page says which file
 * is on its way and how much of the whole has gone. A sending broken off can be sent again
 * with the same button: the form's sending id makes a second arrival the same inquiry.
 */
(function () {
  "use strict";

  var form = document.querySelector("form[data-sending]");
  if (!form || !window.FormData || !window.XMLHttpRequest) {
    return;
  }

  // The folder picker only where the browser has one (not on iPhones, say).
  function showFolderPicker(root) {
    var folder = root.querySelector(".folder-picker");
    if (folder && !("webkitdirectory" in document.createElement("input"))) {
      folder.hidden = true;
    }
  }

  function sizeText(bytes) {
    if (bytes >= 1024 * 1024 * 1024) {
      return (bytes / (1024 * 1024 * 1024)).toFixed(1) + " GB";
    }
    if (bytes >= 1024 * 1024) {
      return (bytes / (1024 * 1024)).toFixed(1) + " MB";
    }
    return Math.max(1, Math.round(bytes / 1024)) + " KB";
  }

  function chosenFiles(root) {
    var files = [];
    root.querySelectorAll('input[type="file"]').forEach(function (input) {
      Array.prototype.forEach.call(input.files || [], function (file) {
        files.push(file);
      });
    });
    return files;
  }

  function statusBox(root) {
    var box = root.querySelector(".sending-status");
    if (!box) {
      box = document.createElement("div");
      box.className = "sending-status";
      box.setAttribute("role", "status");
      box.innerHTML =
        '<p class="sending-whole"></p>' +
        '<progress class="sending-bar" max="100" value="0" aria-label="Sent so far"></progress>' +
        '<p class="sending-file note"></p>';
      var button = root.querySelector('button[type="submit"]');
      button.parentNode.insertBefore(box, button.nextSibling);
    }
    box.hidden = false;
    return box;
  }

  function show(box, whole, file, percent) {
    box.querySelector(".sending-whole").textContent = whole;
    box.querySelector(".sending-file").textContent = file;
    if (percent !== null) {
      box.querySelector(".sending-bar").value = percent;
    }
  }

  // The page the server answered with (a problem to fix, or a pause), in place of this one.
  function replacePage(html) {
    var page = new DOMParser().parseFromString(html, "text/html");
    var main = page.querySelector("main");
    if (!main) {
      return false;
    }
    document.title = page.title;
    document.querySelector("main").replaceWith(main);
    var next = main.querySelector("form[data-sending]");
    if (next) {
      attach(next);
    }
    var summary = main.querySelector(".error-summary");
    (summary || main).focus();
    return true;
  }

  function send(event) {
    var current = event.currentTarget;
    event.preventDefault();
    var button = current.querySelector('button[type="submit"]');
    var files = chosenFiles(current);
    var total = files.reduce(function (sum, file) { return sum + file.size; }, 0);
    var box = statusBox(current);
    var request = new XMLHttpRequest();
    button.disabled = true;
    show(box, "Sending your inquiry…", "", 0);

    request.upload.onprogress = function (progress) {
      if (!progress.lengthComputable || !total) {
        return;
      }
      // The files go in the order they were chosen, after the typed fields.
      var sent = Math.max(0, progress.loaded - (progress.total - total));
      var before = 0;
      var index = 0;
      while (index < files.length - 1 && before + files[index].size <= sent) {
        before += files[index].size;
        index += 1;
      }
      var file = files[index];
      var ofFile = file.size ? Math.min(100, Math.round(((sent - before) / file.size) * 100)) : 100;
      var percent = Math.round((progress.loaded / progress.total) * 100);
      show(
        box,
        "Sent " + sizeText(progress.loaded) + " of " + sizeText(progress.total) + " (" + percent + "%).",
        "Sending file " + (index + 1) + " of " + files.length + ": " + file.name + " (" + ofFile + "%).",
        percent
      );
    };
    request.upload.onload = function () {
      show(box, "Everything has arrived. Saving your inquiry…", "", 100);
    };
    request.onload = function () {
      var url = request.responseURL || "";
      if (request.status === 200 && url.indexOf("/thank-you/") !== -1) {
        window.location.assign(url);
        return;
      }
      if (!replacePage(request.responseText)) {
        button.disabled = false;
        show(box, "Something went wrong on our side. Please send the form again.", "", null);
      }
    };
    request.onerror = request.onabort = request.ontimeout = function () {
      button.disabled = false;
      show(
        box,
        "The connection was broken off before everything had arrived. Please press “Send my inquiry” again: nothing will be sent twice.",
        "",
        null
      );
    };
    request.open("POST", current.action);
    request.send(new FormData(current));
  }

  function attach(root) {
    showFolderPicker(root);
    root.addEventListener("submit", send);
  }

  attach(form);
})();
