// The browser scenarios, by name. A scenario is its steps and the window messages the
// partner page must receive:
//
//   'name': {
//     async steps({ popup, partner, input, audit, fill, expectText }) { ... },
//     expect: [{ type: 'tray.…', someField: /regex/ or an exact value }],
//                               // or (input) => [...], from what the Rust test passed
//     closes: true,             // the popup must close by itself (default: stay open)
//     allowConsole: [/regex/],  // console errors the popup may log (default: none)
//   }
//
// `popup` and `partner` are playwright Pages; `latchkeyOrigin` is latchkey's origin; `input` is what the Rust test passed
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

/// A page opened with a code already used: it says so, and posts `message`.
function usedCode(message) {
  return {
    async steps({ popup, expectText }) {
      await expectText(popup, 'This link can no longer be used');
    },
    expect: [message],
    allowConsole: [/status of 403/],
  };
}

/// Presses one of the wizard's buttons (Next, Back, Finish, Cancel).
async function press(popup, name) {
  await popup.getByRole('button', { name, exact: true }).click();
}

/// Clicks a button whose page closes itself: the page may be gone before the click has
/// returned, which is then no failure (`closes` checks that it closed).
async function clickClosing(popup, locator) {
  await locator.click().catch((err) => {
    if (!popup.isClosed()) throw err;
  });
}

/// A picture of the page as it is, with no focus ring, where the test asked for one.
async function picture(popup, path) {
  if (path) {
    await popup.evaluate(() => document.activeElement?.blur());
    await popup.screenshot({ path, fullPage: true });
  }
}

/// Waits for the wizard's step `n` of `of` (1-based), back on latchkey.
async function atStep(popup, latchkeyOrigin, n, of) {
  await popup.waitForURL((url) => url.origin === latchkeyOrigin);
  await popup.getByText(`Step ${n} of ${of}`).waitFor({ state: 'visible' });
}

/// Fails unless the wizard step's radio labelled `name` is the one picked.
async function expectPicked(popup, name) {
  const picked = await popup.getByRole('radio', { name }).isChecked();
  if (!picked) {
    throw new Error(`the connection ${name} is not picked`);
  }
}

/// At the OAuth provider (oidc-provider's own sign-in and consent pages): signs in as
/// alice, then allows access, or declines it with the consent page's Cancel.
async function signIn(popup, allow) {
  await popup.locator('input[name="login"]').fill('alice');
  await popup.locator('input[name="password"]').fill('pw');
  await popup.getByRole('button', { name: 'Sign-in' }).click();
  const allowButton = popup.getByRole('button', { name: 'Continue' });
  await allowButton.waitFor({ state: 'visible' });
  if (allow) {
    await allowButton.click();
  } else {
    await popup.getByRole('link', { name: '[ Cancel ]' }).click();
  }
}

/// The wizard's first two steps with a connection the end user already has for the
/// token slot (`input.existing`, by name) and none for the optional OAuth slot.
async function toSettings(popup, latchkeyOrigin, input) {
  await atStep(popup, latchkeyOrigin, 1, 3);
  await popup.getByRole('radio', { name: input.existing }).check();
  await press(popup, 'Next');
  await atStep(popup, latchkeyOrigin, 2, 3);
  await press(popup, 'Next');
  await atStep(popup, latchkeyOrigin, 3, 3);
}

/// What the wizard posts once it has checked with the opener and saved.
const validatedAndFinished = (input) => [
  { type: 'tray.configPopup.validate' },
  { type: 'tray.configPopup.finish', data: { solutionInstanceId: input.instanceId } },
];

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
      await clickClosing(popup, popup.getByRole('button', { name: 'Cancel' }));
    },
    expect: [{ type: 'tray.authpopup.close' }],
    closes: true,
  },

  // A code already used: an error page, and the opener is told.
  'auth-dialog/used-code': usedCode({ type: 'tray.authPopup.error', error: /start again from the app/ }),

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

  // The config wizard, as the public API's sample apps use it: the end user creates a
  // token connection in place, connects the OAuth service through the provider's real
  // sign-in and consent, fills every setting and finishes.
  'wizard/activate': {
    async steps({ popup, input, audit, fill, expectText, latchkeyOrigin }) {
      // Step 1: the token service's slot. No connection yet: create one here.
      await atStep(popup, latchkeyOrigin, 1, 3);
      await expectText(popup, 'You have no Zendesk connection yet.');
      await popup.getByRole('link', { name: 'Create a new Zendesk connection' }).click();
      await expectText(popup, 'Connect Zendesk');
      await audit("the wizard's token form");
      await fill(popup, input.token);
      await connect(popup);
      await atStep(popup, latchkeyOrigin, 1, 3);
      await expectPicked(popup, new RegExp(input.token.name));
      await audit('the token step, connected');
      await press(popup, 'Next');

      // Step 2: the OAuth service's slot, through the provider.
      await atStep(popup, latchkeyOrigin, 2, 3);
      await audit('the OAuth step');
      await popup.getByRole('link', { name: 'Create a new Acme CRM connection' }).click();
      await expectText(popup, 'Read your contacts');
      await audit("the wizard's OAuth connect page");
      await picture(popup, input.screenshots?.connect);
      await popup.getByRole('link', { name: 'Connect to Acme CRM' }).click();
      await signIn(popup, true);
      await atStep(popup, latchkeyOrigin, 2, 3);
      await expectPicked(popup, /Acme CRM/);
      await audit('the OAuth step, connected');
      await press(popup, 'Next');

      // Step 3: the settings, one of each type.
      await atStep(popup, latchkeyOrigin, 3, 3);
      await audit('the settings step');
      await fill(popup, input.settings);
      await picture(popup, input.screenshots?.settings);
      await press(popup, 'Finish');
    },
    expect: validatedAndFinished,
    closes: true,
  },

  // Cancel on the wizard's first step tells the opener and closes the popup.
  'wizard/cancel': {
    async steps({ popup, latchkeyOrigin }) {
      await atStep(popup, latchkeyOrigin, 1, 3);
      await clickClosing(popup, popup.getByRole('button', { name: 'Cancel', exact: true }));
    },
    expect: (input) => [{ type: 'tray.configPopup.cancel', data: { solutionInstanceId: input.instanceId } }],
    closes: true,
  },

  // The end user declines at the provider's consent page: a page that says so, and the
  // opener is told with the wizard's error message.
  'wizard/oauth-declined': {
    async steps({ popup, input, audit, expectText, latchkeyOrigin }) {
      await atStep(popup, latchkeyOrigin, 1, 3);
      await popup.getByRole('radio', { name: input.existing }).check();
      await press(popup, 'Next');
      await atStep(popup, latchkeyOrigin, 2, 3);
      await popup.getByRole('link', { name: 'Create a new Acme CRM connection' }).click();
      await popup.getByRole('link', { name: 'Connect to Acme CRM' }).click();
      await signIn(popup, false);
      await popup.waitForURL((url) => url.origin === latchkeyOrigin);
      await expectText(popup, 'Access was not allowed');
      await audit('the page after the provider said no');
    },
    expect: [{ type: 'tray.configPopup.error', err: /access was not allowed/ }],
    // The page answers 403, which Chromium logs for the document.
    allowConsole: [/status of 403/],
  },

  // A wizard link whose code was already used: an error page, and the opener is told.
  'wizard/used-code': usedCode({ type: 'tray.configPopup.error', err: /start again from the app/ }),

  // The opener refuses a setting (`tray.configPopup.client.validation` with an error for
  // the slot): the wizard shows it on the field and does not finish; with the setting
  // changed and the opener content, it finishes.
  'wizard/opener-validation': {
    async steps({ popup, partner, input, audit, fill, expectText, latchkeyOrigin }) {
      await toSettings(popup, latchkeyOrigin, input);
      await fill(popup, input.settings);
      await partner.evaluate((errors) => {
        window.validation = { inProgress: false, errors };
      }, input.openerErrors);
      await press(popup, 'Finish');
      const [slot, text] = Object.entries(input.openerErrors)[0];
      await expectText(popup, text);
      const field = popup.locator(`[name="config.${slot}"]`);
      const state = await field.evaluate((element) => ({
        invalid: element.getAttribute('aria-invalid'),
        described: (element.getAttribute('aria-describedby') || '').split(' '),
        focused: document.activeElement === element,
      }));
      if (state.invalid !== 'true' || !state.described.includes(`e-config.${slot}`) || !state.focused) {
        throw new Error(`the opener's error is not on its field: ${JSON.stringify(state)}`);
      }
      await atStep(popup, latchkeyOrigin, 3, 3);
      await audit("the settings with the opener's error");
      await partner.evaluate(() => {
        window.validation = undefined;
      });
      await fill(popup, input.fixed);
      await press(popup, 'Finish');
    },
    expect: (input) => [{ type: 'tray.configPopup.validate' }, ...validatedAndFinished(input)],
    closes: true,
  },

  // The edit dialog, later: a new name, the secret left blank (it keeps its value).
  'auth-dialog/edit': {
    async steps({ popup, input, fill, expectText }) {
      await expectText(popup, 'Update your Zendesk connection');
      await expectText(popup, 'Leave blank to keep it.');
      const secret = await popup.locator('[name="credentials.api_token"]').inputValue();
      if (secret !== '') {
        throw new Error('the stored secret is shown');
      }
      await fill(popup, input.values);
      await popup.getByRole('button', { name: 'Save', exact: true }).click();
    },
    expect: (input) => [{ type: 'tray.authpopup.finish', authId: input.authId }],
    closes: true,
  },
};
