// The browser scenarios, by name. A scenario is its steps and the window messages the
// partner page must receive:
//
//   'name': {
//     async steps({ popup, partner, input, audit, fill, expectText }) { ... },
//     expect: [{ type: 'tray.…', someField: /regex/ or an exact value }],
//     closes: true,             // the popup must close by itself (default: stay open)
//     allowConsole: [/regex/],  // console errors the popup may log (default: none)
//   }
//
// `popup` and `partner` are playwright Pages; `input` is what the Rust test passed
// (`values`, `screenshot`, anything else it adds); `audit(label)` runs the accessibility
// and 500x700 checks on the popup's current page (run.mjs does it once for the page as
// opened); `fill(page, values)` fills controls by name; `expectText(page, text)` waits
// for visible text. Messages are checked after the steps, in order, and each must come
// from latchkey's origin. The Rust test (tests/api/browser.rs) prepares the data and
// checks the outcome through the API.

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/// Submits the auth dialog's form.
async function connect(popup) {
  await popup.getByRole('button', { name: 'Connect', exact: true }).click();
}

export const scenarios = {
  // The end user fills the token-style auth dialog and connects.
  'auth-dialog/finish': {
    async steps({ popup, input, fill }) {
      await fill(popup, input.values);
      if (input.screenshot) {
        await popup.evaluate(() => document.activeElement?.blur());
        await popup.screenshot({ path: input.screenshot, fullPage: true });
      }
      await connect(popup);
    },
    expect: [{ type: 'tray.authpopup.finish', authId: UUID }],
    closes: true,
  },

  // A value the schema refuses is shown on its field, with the focus on the summary; the
  // secret must be typed again (it never comes back); then the dialog connects.
  'auth-dialog/fix-an-error': {
    async steps({ popup, input, fill, audit, expectText }) {
      await fill(popup, { ...input.values, 'credentials.email': 'not-an-email' });
      await connect(popup);
      await expectText(popup, 'Please correct the fields marked below.');
      await expectText(popup, 'is not a valid email');
      const focused = await popup.evaluate(() => document.activeElement?.id);
      if (focused !== 'error-summary') {
        throw new Error(`the focus is on ${JSON.stringify(focused)}, not on the error summary`);
      }
      const secret = await popup.locator('[name="credentials.api_token"]').inputValue();
      if (secret !== '') {
        throw new Error('the secret came back into the form');
      }
      await audit('the page with errors');
      await fill(popup, input.values);
      await connect(popup);
    },
    expect: [{ type: 'tray.authpopup.finish', authId: UUID }],
    closes: true,
    // The refused post answers 422, which Chromium logs for the document.
    allowConsole: [/status of 422/],
  },

  // Cancel tells the opener and closes the popup.
  'auth-dialog/cancel': {
    async steps({ popup }) {
      await popup.getByRole('button', { name: 'Cancel' }).click();
    },
    expect: [{ type: 'tray.authpopup.close' }],
    closes: true,
  },

  // A code already used: an error page, and the opener is told.
  'auth-dialog/used-code': {
    async steps({ popup, expectText }) {
      await expectText(popup, 'This link can no longer be used');
    },
    expect: [{ type: 'tray.authPopup.error', error: /start again from the app/ }],
    allowConsole: [/status of 403/],
  },

  // Keyboard only: Tab from control to control, type each value, Enter on Connect. Every
  // control must show where the focus is.
  'auth-dialog/keyboard-only': {
    async steps({ popup, input }) {
      for (let presses = 0; presses < 40; presses += 1) {
        await popup.keyboard.press('Tab');
        const focused = await popup.evaluate(() => {
          const element = document.activeElement;
          const style = getComputedStyle(element);
          return {
            tag: element.tagName.toLowerCase(),
            name: element.getAttribute('name'),
            text: element.textContent.trim(),
            visible: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0,
          };
        });
        if (focused.tag === 'body') {
          continue;
        }
        if (!focused.visible) {
          throw new Error(`no visible focus on ${JSON.stringify(focused)}`);
        }
        if (focused.name && focused.name in input.values) {
          await popup.keyboard.type(String(input.values[focused.name]));
        } else if (focused.tag === 'button' && focused.text === 'Connect') {
          await popup.keyboard.press('Enter');
          return;
        }
      }
      throw new Error('Tab never reached the Connect button');
    },
    expect: [{ type: 'tray.authpopup.finish', authId: UUID }],
    closes: true,
  },
};
