import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  Clipboard,
  ICommandPalette,
  InputDialog,
  MainAreaWidget,
  WidgetTracker,
  showErrorMessage,
} from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { mistudioIcon } from './icon';
import { IRecord, RestModel } from './model';
import { insertIntoNotebook } from './notebook';
import { openRendererFactory } from './open';
import { DownloadPage, ModelPage, pageId } from './page';
import { MiStudioSidebar } from './sidebar';

namespace CommandIDs {
  export const open = 'mistudio:open';
  export const openModel = 'mistudio:open-model';
  export const download = 'mistudio:download';
}

const SIDEBAR_ID = 'mistudio-sidebar';
const CATEGORY = 'miStudio';

function activate(
  app: JupyterFrontEnd,
  tracker: INotebookTracker,
  restorer: ILayoutRestorer | null,
  palette: ICommandPalette | null,
  rendermime: IRenderMimeRegistry | null,
): void {
  const { commands, shell, serviceManager } = app;
  const model = new RestModel(serviceManager.serverSettings);
  const pages = new WidgetTracker<MainAreaWidget<ModelPage>>({ namespace: 'mistudio-model' });
  // A new notebook on the default kernel, without the kernel dialog.
  const newNotebook = async (): Promise<NotebookPanel> => {
    await serviceManager.kernelspecs.ready;
    const kernelName = serviceManager.kernelspecs.specs?.default;
    return commands.execute('notebook:create-new', { kernelName });
  };
  const insert = async (code: string): Promise<void> => {
    const panel = await insertIntoNotebook(tracker, newNotebook, code);
    shell.activateById(panel.id);
  };
  const openModel = (id: string): MainAreaWidget<ModelPage> => {
    const open = pages.find((page) => page.id === pageId(id));
    if (open) {
      shell.activateById(open.id);
      return open;
    }
    const content = new ModelPage({ list: model, id, insert, copy: (code) => Clipboard.copyToSystem(code) });
    content.title.icon = mistudioIcon;
    const page = new MainAreaWidget({ content });
    page.id = pageId(id);
    void pages.add(page);
    shell.add(page, 'main');
    shell.activateById(page.id);
    return page;
  };
  // Which model, when the command is run from the palette: a choice among the catalog's entries.
  const chooseModel = async (): Promise<string | null> => {
    await model.start();
    const entries = model.models();
    if (!entries.length) {
      await showErrorMessage('miStudio', 'There are no models yet: download one first.');
      return null;
    }
    const label = (m: IRecord) => `${m.name} (${m.status})`;
    const answer = await InputDialog.getItem({ title: 'Open a model', items: entries.map(label) });
    return answer.button.accept ? (entries.find((m) => label(m) === answer.value)?.id ?? null) : null;
  };

  let downloadPage: MainAreaWidget | null = null;

  const sidebar = new MiStudioSidebar({
    model,
    openModel: (id) => void commands.execute(CommandIDs.openModel, { id }),
    openDownload: () => void commands.execute(CommandIDs.download),
  });
  sidebar.id = SIDEBAR_ID;
  sidebar.title.icon = mistudioIcon;
  sidebar.title.caption = 'miStudio: models and downloads';
  shell.add(sidebar, 'left', { rank: 850 });
  restorer?.add(sidebar, SIDEBAR_ID);

  commands.addCommand(CommandIDs.open, {
    label: 'Show miStudio Models',
    icon: mistudioIcon,
    execute: () => shell.activateById(SIDEBAR_ID),
  });
  commands.addCommand(CommandIDs.openModel, {
    label: (args) => (args.id ? 'Open Model Page' : 'miStudio: open model…'),
    caption: 'The memory, parameters, architecture and hook points of a model, in a tab',
    icon: mistudioIcon,
    execute: async (args) => {
      const id = (args.id as string | undefined) ?? (await chooseModel());
      return id ? openModel(id) : null;
    },
  });
  commands.addCommand(CommandIDs.download, {
    label: 'miStudio: download a model…',
    icon: mistudioIcon,
    execute: () => {
      if (!downloadPage || downloadPage.isDisposed) {
        const content = new DownloadPage(model, () => page.close());
        content.title.icon = mistudioIcon;
        const page = new MainAreaWidget({ content });
        page.id = 'mistudio-download';
        shell.add(page, 'main');
        downloadPage = page;
      }
      shell.activateById(downloadPage.id);
    },
  });
  restorer?.restore(pages, {
    command: CommandIDs.openModel,
    args: (page) => ({ id: page.content.modelId }),
    name: (page) => page.content.modelId,
  });
  rendermime?.addFactory(openRendererFactory((id) => void commands.execute(CommandIDs.openModel, { id })));

  palette?.addItem({ command: CommandIDs.open, category: CATEGORY });
  palette?.addItem({ command: CommandIDs.openModel, category: CATEGORY });
  palette?.addItem({ command: CommandIDs.download, category: CATEGORY });
}

/** miStudio in JupyterLab: the model list in the left sidebar, a tab per model and the download form. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'mistudio-jupyter:sidebar',
  description: 'Hugging Face models in JupyterLab: a sidebar list, model pages with memory, parameters and hooks.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILayoutRestorer, ICommandPalette, IRenderMimeRegistry],
  activate,
};

export default plugin;
